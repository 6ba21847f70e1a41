"""The lean HTTP/1.1 client on asyncio streams (twin of :mod:`lockheed._sync.http1`).

See :mod:`lockheed._http1` for why it exists and what it serves. A pool keeps
up to :data:`~lockheed._http1.IDLE_CONNECTIONS` kept-alive connections; a task
takes one, sends its request in one write, reads the answer, and gives the
connection back only after a complete exchange that the server did not mark
to close. A task cancelled in the middle closes its connection, while it
connects too (``asyncio`` closes a connection cancelled in its TLS
handshake). Connections are closed at once (the socket is shut without a TLS
close handshake), so none outlives its pool or its event loop. A watch's
answer is a :class:`Stream`: read line by line as it arrives, its
connection goes back to the pool only when the server ended it; one left,
cancelled, idle or broken before that is closed.

Failure semantics: connection and TLS errors (``OSError``), timeouts
(``asyncio.TimeoutError``) and unparsable answers
(:class:`~lockheed._http1.ProtocolError`) propagate; the connection is
closed, never reused. A connection that was idle in the pool and turns out
closed by the server before answering (the keep-alive race) is replaced and
a GET sent once more on a new connection; a write is never sent twice (its
outcome is unknown: the caller reads and decides), nor is a request whose
answer had begun. A 401 with a token file reads the file again and
retries once, as lightkube's client does.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TypeVar, cast

from .._http1 import (
    CLOSED_EARLY,
    IDLE_CONNECTIONS,
    MAX_HEAD,
    STREAM_READ,
    Endpoint,
    Head,
    Pace,
    ProtocolError,
    Response,
    batch_bytes,
    chunk_size,
    lines_of,
    parse_head,
    request_bytes,
)

__all__ = ["Http1Pool", "Stream"]

T = TypeVar("T")


class _Unanswered(ConnectionError):
    """The connection closed before a single byte of the answer."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, endpoint: Endpoint) -> _Connection:
        reader, writer = await asyncio.open_connection(
            endpoint.host,
            endpoint.port,
            ssl=endpoint.ssl,
            server_hostname=endpoint.host if endpoint.ssl is not None else None,
            limit=MAX_HEAD,
        )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    def stale(self) -> bool:
        """An idle connection that the server closed (or that we closed)."""
        return self.writer.is_closing() or self.reader.at_eof()

    def close(self) -> None:
        # Abort, not close: over TLS, close() starts a shutdown handshake that
        # finishes only on a later loop iteration (or after 30 s), so a loop
        # that ends first would leave the socket open until garbage collection.
        # The API server needs no close_notify: every answer is length-framed.
        self.writer.transport.abort()

    async def _line(self, idle: float | None = None) -> bytes:
        try:
            return await _within(self.reader.readuntil(b"\n"), idle)
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except asyncio.LimitOverrunError:
            raise ProtocolError("response line too long") from None

    async def _exactly(self, n: int, idle: float | None = None) -> bytes:
        try:
            return await _within(self.reader.readexactly(n), idle)
        except asyncio.IncompleteReadError:
            raise ProtocolError("connection closed in the response body") from None

    async def send(self, method: str, data: bytes) -> Head:
        """Send ``data``; return the answer's head (its body is :meth:`body`).

        Raises :class:`_Unanswered` when the connection failed before a byte
        of the answer arrived."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
            raise _Unanswered(f"connection failed before any answer: {exc!r}") from exc
        return await self.head(method)

    async def head(self, method: str) -> Head:
        """The head of the next answer on this connection (to a request sent
        with ``method``); :class:`_Unanswered` if none begins."""
        head = bytearray()
        try:
            line = await self._line()
        except (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
            raise _Unanswered(f"connection failed before any answer: {exc!r}") from exc
        while True:
            if not line:
                if head:
                    raise ProtocolError("connection closed in the response head")
                raise _Unanswered("connection closed before any answer")
            head += line
            if line in (b"\r\n", b"\n") and len(head) > len(line):
                break
            if len(head) > MAX_HEAD:
                raise ProtocolError("response head too long")
            line = await self._line()
        return parse_head(method, bytes(head))

    async def body(self, head: Head, idle: float | None = None) -> AsyncIterator[bytes]:
        """The body after ``head``, piece by piece as it arrives (a chunk, or
        what one read returns), up to its end. A read that waits ``idle``
        seconds (None: no limit) raises ``asyncio.TimeoutError``."""
        if head.chunked:
            while True:
                size = chunk_size(await self._line(idle))
                if size == 0:
                    while await self._line(idle) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                yield await self._exactly(size, idle)
                await self._line(idle)
        elif head.length is not None:
            yield await self._exactly(head.length, idle)
        else:
            while piece := await _within(self.reader.read(STREAM_READ), idle):
                yield piece


class Http1Pool:
    """Kept-alive connections to one endpoint, shared by the tasks of one event loop."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self._idle: list[_Connection] = []
        self._closed = False
        self._pace = Pace()  # how long a pipelined batch waits before it reads

    def _take(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.stale():
                return conn
            conn.close()
        return None

    def _give(self, conn: _Connection) -> None:
        if not self._closed and len(self._idle) < IDLE_CONNECTIONS:
            self._idle.append(conn)
        else:
            conn.close()

    async def request(
        self, method: str, target: str, body: bytes | None, timeout: float
    ) -> Response:
        """One request; an answer of any status is returned (errors are the caller's)."""
        try:
            return await asyncio.wait_for(self._request(method, target, body), timeout)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            raise TimeoutError(f"no answer within {timeout:g} s") from None

    async def _request(self, method: str, target: str, body: bytes | None) -> Response:
        endpoint = self.endpoint
        resp = await self._send(method, target, body, endpoint.auth_header())
        if resp.status_code == 401 and endpoint.token_file is not None:
            resp = await self._send(method, target, body, endpoint.token_file.read())
        return resp

    async def _send(
        self, method: str, target: str, body: bytes | None, auth: str | None
    ) -> Response:
        conn, head = await self._open(method, target, body, auth)
        try:
            content = b"".join([piece async for piece in conn.body(head)])
        except BaseException:
            conn.close()
            raise
        self._done(conn, head.keep_alive)
        return Response(head.status, head.headers, content)

    async def request_batch(
        self, requests: Sequence[tuple[str, str, bytes | None]], timeout: float
    ) -> list[Response | Exception]:
        """Several requests pipelined on one connection: sent in one write, their
        answers read in order, all within ``timeout`` seconds. Each item of the
        result is its request's answer (of any status), or the error that left
        it without one (the connection failed or closed before it, or the time
        ran out): nothing is sent twice, since a write's outcome is then
        unknown (the caller reads and decides). A 401 with a token file is sent
        again, alone, with the file read again.

        As in the sync pool, the answers are read once about as much time has
        passed as the last batches' answers took; meanwhile the connection is
        not read at all (``pause_reading``), so the event loop is not woken
        for each answer as it arrives."""
        endpoint = self.endpoint
        auth = endpoint.auth_header()
        data = batch_bytes(endpoint, requests, auth)
        out: list[Response | Exception] = []
        conn = self._take()
        keep = True
        started = time.monotonic()

        async def exchange() -> None:
            nonlocal conn, keep
            if conn is None:
                conn = await _Connection.open(endpoint)
            try:
                conn.writer.write(data)
                await conn.writer.drain()
            except (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
                raise _Unanswered(f"connection failed before any answer: {exc!r}") from exc
            pause = self._pace.pause(len(requests))
            if pause > 0:
                transport = cast(asyncio.Transport, conn.writer.transport)
                transport.pause_reading()
                try:
                    await asyncio.sleep(min(pause, timeout / 2))
                finally:
                    if not transport.is_closing():
                        transport.resume_reading()
            for method, _, _ in requests:
                head = await conn.head(method)
                content = b"".join([piece async for piece in conn.body(head)])
                out.append(Response(head.status, head.headers, content))
                keep = head.keep_alive
                if not keep:
                    break

        try:
            await _within(exchange(), timeout)
        except (OSError, ProtocolError, asyncio.TimeoutError) as exc:
            if conn is not None:
                conn.close()
            conn = None
            if isinstance(exc, asyncio.TimeoutError):  # not the builtin one before 3.11
                exc = TimeoutError(f"no answer within {timeout:g} s")
            out += [exc] * (len(requests) - len(out))
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if conn is not None:
            if len(out) == len(requests) and keep:
                self._pace.answered(len(requests), time.monotonic() - started)
                self._give(conn)
            else:
                conn.close()
                out += [_Unanswered(CLOSED_EARLY)] * (len(requests) - len(out))
        if endpoint.token_file is not None:
            for i, (method, target, body) in enumerate(requests):
                answer = out[i]
                if isinstance(answer, Response) and answer.status_code == 401:
                    try:
                        again = self._send(method, target, body, endpoint.token_file.read())
                        out[i] = await _within(again, timeout)
                    except (OSError, ProtocolError) as exc:
                        out[i] = exc
                    except asyncio.TimeoutError:
                        out[i] = TimeoutError(f"no answer within {timeout:g} s")
        return out

    async def _open(
        self, method: str, target: str, body: bytes | None, auth: str | None
    ) -> tuple[_Connection, Head]:
        """Send a request; return its connection and the answer's head."""
        data = request_bytes(self.endpoint, method, target, body, auth)
        conn = self._take()
        reused = conn is not None
        while True:
            if conn is None:
                conn = await _Connection.open(self.endpoint)
            try:
                return conn, await conn.send(method, data)
            except _Unanswered:
                conn.close()
                if not reused or method != "GET":
                    # A write may have been done before its answer was lost: sending
                    # it again would turn that into a conflict and hide it. The
                    # caller (the core) reads and decides instead.
                    raise
                reused, conn = False, None  # the keep-alive race: once more, on a new one
                continue
            except BaseException:
                conn.close()
                raise

    def _done(self, conn: _Connection, keep: bool) -> None:
        """A complete exchange on ``conn``: keep it if the server let us."""
        if keep:
            self._give(conn)
        else:
            conn.close()

    async def stream(self, target: str, timeout: float) -> Stream:
        """A GET whose answer is read as it arrives (a watch): its head within
        ``timeout`` seconds, then its lines (:meth:`Stream.lines`)."""
        try:
            return await _within(self._stream(target), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no answer within {timeout:g} s") from None

    async def _stream(self, target: str) -> Stream:
        endpoint = self.endpoint
        conn, head = await self._open("GET", target, None, endpoint.auth_header())
        if head.status == 401 and endpoint.token_file is not None:
            await Stream(self, conn, head).aread()
            conn, head = await self._open("GET", target, None, endpoint.token_file.read())
        return Stream(self, conn, head)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class Stream(Response):
    """An answer read as it arrives (a watch): its head at once, then its body
    line by line (:meth:`lines`), or whole (:meth:`aread`, for an error). A
    body read to its end gives the connection back to the pool; one closed
    (:meth:`aclose`), cancelled, failed or idle before its end closes it."""

    def __init__(self, pool: Http1Pool, conn: _Connection, head: Head):
        super().__init__(head.status, head.headers, b"")
        self._pool = pool
        self._conn: _Connection | None = conn
        self._head = head

    async def lines(self, idle: float | None) -> AsyncIterator[bytes]:
        """The body's lines (without their newline) up to its end, or until no
        byte of it arrives for ``idle`` seconds (None: no limit): either way
        the stream is over then. A broken connection or framing raises
        (``OSError``, :class:`~lockheed._http1.ProtocolError`)."""
        conn = self._conn
        if conn is None:
            return
        pending = b""
        try:
            async for piece in conn.body(self._head, idle):
                lines, pending = lines_of(pending, piece)
                for line in lines:
                    yield line
        except asyncio.TimeoutError:
            self._drop()
            return
        except BaseException:
            self._drop()
            raise
        self._conn = None
        self._pool._done(conn, self._head.keep_alive)
        if pending:
            yield pending

    async def aread(self) -> bytes:
        """The whole body (an error's)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return self.content
        try:
            self.content = b"".join([piece async for piece in conn.body(self._head)])
        except BaseException:
            conn.close()
            raise
        self._pool._done(conn, self._head.keep_alive)
        return self.content

    async def aclose(self) -> None:
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


async def _within(aw: Awaitable[T], timeout: float | None) -> T:
    """``await aw``, raising ``asyncio.TimeoutError`` after ``timeout`` seconds
    (None: no limit)."""
    if timeout is None:
        return await aw
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout):
            return await aw
    return await asyncio.wait_for(aw, timeout)
