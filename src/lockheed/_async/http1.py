"""The lean HTTP/1.1 client on asyncio streams (twin of :mod:`lockheed._sync.http1`).

See :mod:`lockheed._http1` for why it exists and what it serves. A pool keeps
up to :data:`~lockheed._http1.IDLE_CONNECTIONS` kept-alive connections; a task
takes one, sends its request in one write, reads the answer, and gives the
connection back only after a complete exchange that the server did not mark
to close. A task cancelled in the middle closes its connection. Connections
are closed at once (the socket is shut without a TLS close handshake), so
none outlives its pool or its event loop.

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

from .._http1 import (
    IDLE_CONNECTIONS,
    MAX_HEAD,
    Endpoint,
    ProtocolError,
    Response,
    chunk_size,
    parse_head,
    request_bytes,
)

__all__ = ["Http1Pool"]


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

    async def _line(self) -> bytes:
        try:
            return await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except asyncio.LimitOverrunError:
            raise ProtocolError("response line too long") from None

    async def _exactly(self, n: int) -> bytes:
        try:
            return await self.reader.readexactly(n)
        except asyncio.IncompleteReadError:
            raise ProtocolError("connection closed in the response body") from None

    async def exchange(self, method: str, data: bytes) -> tuple[Response, bool]:
        """Send ``data``; return the response and whether the connection may be kept.

        Raises :class:`_Unanswered` when the connection failed before a byte
        of the answer arrived."""
        head = bytearray()
        try:
            self.writer.write(data)
            await self.writer.drain()
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
        parsed = parse_head(method, bytes(head))
        if parsed.chunked:
            parts = []
            while True:
                size = chunk_size(await self._line())
                if size == 0:
                    while await self._line() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                parts.append(await self._exactly(size))
                await self._line()
            body = b"".join(parts)
        elif parsed.length is not None:
            body = await self._exactly(parsed.length)
        else:
            body = await self.reader.read()
        return Response(parsed.status, parsed.headers, body), parsed.keep_alive


class Http1Pool:
    """Kept-alive connections to one endpoint, shared by the tasks of one event loop."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self._idle: list[_Connection] = []
        self._closed = False

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
        data = request_bytes(self.endpoint, method, target, body, auth)
        conn = self._take()
        reused = conn is not None
        while True:
            if conn is None:
                conn = await _Connection.open(self.endpoint)
            try:
                resp, keep = await conn.exchange(method, data)
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
            if keep:
                self._give(conn)
            else:
                conn.close()
            return resp

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
