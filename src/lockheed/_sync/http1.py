"""The lean HTTP/1.1 client, blocking sockets (twin of :mod:`lockheed._async.http1`).

See :mod:`lockheed._http1` for why it exists and what it serves. A pool keeps
up to :data:`~lockheed._http1.IDLE_CONNECTIONS` kept-alive connections; any
thread takes one, sends its request in one write, reads the answer, and
gives the connection back only after a complete exchange that the server did
not mark to close. A watch's answer is a :class:`Stream`: read line by line
as it arrives, its connection goes back to the pool only when the server
ended it; one closed, idle or broken before that is closed, and
:meth:`Stream.shutdown` ends a read blocked on it from another thread.

Failure semantics: connection and TLS errors, timeouts (``OSError``) and
unparsable answers (:class:`~lockheed._http1.ProtocolError`) propagate; the
connection is closed, never reused. A connection that was idle in the pool
and turns out closed by the server before answering (the keep-alive race) is
replaced and a GET sent once more on a new connection; a write is never sent
twice (its outcome is unknown: the caller reads and decides), nor is a
request whose answer had begun. A 401 with a token file reads the file
again and retries once, as lightkube's client does.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence

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


class _Connection:
    def __init__(self, endpoint: Endpoint, timeout: float):
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if endpoint.ssl is not None:
                sock = endpoint.ssl.wrap_socket(sock, server_hostname=endpoint.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.reader = sock.makefile("rb")

    def stale(self) -> bool:
        """An idle connection with something to read was closed by the server
        (or is out of step): it must not carry a request."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def send(self, method: str, data: bytes, timeout: float) -> Head:
        """Send ``data``; return the answer's head (its body is :meth:`body`),
        each socket operation within ``timeout`` seconds.

        Raises :class:`_Unanswered` when the connection failed before a byte
        of the answer arrived."""
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(data)
        except (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
            raise _Unanswered(f"connection failed before any answer: {exc!r}") from exc
        return self.head(method)

    def head(self, method: str) -> Head:
        """The head of the next answer on this connection (to a request sent
        with ``method``); :class:`_Unanswered` if none begins."""
        reader = self.reader
        head = bytearray()
        try:
            line = reader.readline(MAX_HEAD)
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
            line = reader.readline(MAX_HEAD)
        return parse_head(method, bytes(head))

    def body(self, head: Head) -> Iterator[bytes]:
        """The body after ``head``, piece by piece as it arrives (a chunk, or
        what one read returns), up to its end; each read within the socket's
        timeout (``TimeoutError`` after it)."""
        reader = self.reader
        if head.chunked:
            while True:
                size = chunk_size(reader.readline(MAX_HEAD))
                if size == 0:
                    while reader.readline(MAX_HEAD) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                yield _exactly(reader, size)
                reader.readline(MAX_HEAD)
        elif head.length is not None:
            yield _exactly(reader, head.length)
        else:
            while piece := reader.read1(STREAM_READ):
                yield piece


class _Unanswered(ConnectionError):
    """The connection closed before a single byte of the answer."""


def _exactly(reader: object, n: int) -> bytes:
    data = reader.read(n)  # type: ignore[attr-defined]
    if len(data) != n:
        raise ProtocolError("connection closed in the response body")
    assert isinstance(data, bytes)
    return data


class Http1Pool:
    """Kept-alive connections to one endpoint, shared by every thread."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._pace = Pace()  # how long a pipelined batch waits before it reads

    def _take(self) -> _Connection | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            if not conn.stale():
                return conn
            conn.close()

    def _give(self, conn: _Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def request(self, method: str, target: str, body: bytes | None, timeout: float) -> Response:
        """One request; an answer of any status is returned (errors are the caller's)."""
        endpoint = self.endpoint
        resp = self._send(method, target, body, timeout, endpoint.auth_header())
        if resp.status_code == 401 and endpoint.token_file is not None:
            resp = self._send(method, target, body, timeout, endpoint.token_file.read())
        return resp

    def _send(
        self, method: str, target: str, body: bytes | None, timeout: float, auth: str | None
    ) -> Response:
        conn, head = self._open(method, target, body, timeout, auth)
        try:
            content = b"".join(conn.body(head))
        except BaseException:
            conn.close()
            raise
        self._done(conn, head.keep_alive)
        return Response(head.status, head.headers, content)

    def request_batch(
        self, requests: Sequence[tuple[str, str, bytes | None]], timeout: float
    ) -> list[Response | Exception]:
        """Several requests pipelined on one connection: sent in one write, their
        answers read in order, all within ``timeout`` seconds. Each item of the
        result is its request's answer (of any status), or the error that left
        it without one (the connection failed or closed before it, or the time
        ran out): nothing is sent twice, since a write's outcome is then
        unknown (the caller reads and decides). A 401 with a token file is sent
        again, alone, with the file read again.

        The server answers pipelined requests one after another. The read
        begins once about as much time has passed as the last batches' answers
        took (:class:`~lockheed._http1.Pace`), so that most answers are
        read together instead of each after a wake-up of its own; what has not
        arrived by then is waited for as usual."""
        endpoint = self.endpoint
        auth = endpoint.auth_header()
        data = batch_bytes(endpoint, requests, auth)
        out: list[Response | Exception] = []
        started = time.monotonic()
        end = started + timeout
        conn = self._take()
        keep = True
        try:
            if conn is None:
                conn = _Connection(endpoint, timeout)
            conn.sock.settimeout(timeout)
            conn.sock.sendall(data)
            pause = self._pace.pause(len(requests))
            if pause > 0:
                time.sleep(min(pause, timeout / 2))
            for method, _, _ in requests:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no answer within {timeout:g} s")
                conn.sock.settimeout(left)
                head = conn.head(method)
                out.append(Response(head.status, head.headers, b"".join(conn.body(head))))
                keep = head.keep_alive
                if not keep:
                    break
        except (OSError, ProtocolError) as exc:
            if conn is not None:
                conn.close()
            conn = None
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
                        token = endpoint.token_file.read()
                        out[i] = self._send(method, target, body, timeout, token)
                    except (OSError, ProtocolError) as exc:
                        out[i] = exc
        return out

    def _open(
        self, method: str, target: str, body: bytes | None, timeout: float, auth: str | None
    ) -> tuple[_Connection, Head]:
        """Send a request; return its connection and the answer's head."""
        data = request_bytes(self.endpoint, method, target, body, auth)
        conn = self._take()
        reused = conn is not None
        while True:
            if conn is None:
                conn = _Connection(self.endpoint, timeout)
            try:
                return conn, conn.send(method, data, timeout)
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

    def stream(self, target: str, timeout: float) -> Stream:
        """A GET whose answer is read as it arrives (a watch): its head within
        ``timeout`` seconds, then its lines (:meth:`Stream.lines`)."""
        endpoint = self.endpoint
        conn, head = self._open("GET", target, None, timeout, endpoint.auth_header())
        if head.status == 401 and endpoint.token_file is not None:
            Stream(self, conn, head).read()
            conn, head = self._open("GET", target, None, timeout, endpoint.token_file.read())
        return Stream(self, conn, head)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class Stream(Response):
    """An answer read as it arrives (a watch): its head at once, then its body
    line by line (:meth:`lines`), or whole (:meth:`read`, for an error). A
    body read to its end gives the connection back to the pool; one closed
    (:meth:`close`), failed or idle before its end closes it. :meth:`shutdown`
    (from any thread) ends a read blocked on it at once."""

    def __init__(self, pool: Http1Pool, conn: _Connection, head: Head):
        super().__init__(head.status, head.headers, b"")
        self._pool = pool
        self._conn: _Connection | None = conn
        self._sock = conn.sock
        self._head = head

    def lines(self, idle: float | None) -> Iterator[bytes]:
        """The body's lines (without their newline) up to its end, or until no
        byte of it arrives for ``idle`` seconds (None: no limit): either way
        the stream is over then. A broken connection or framing raises
        (``OSError``, :class:`~lockheed._http1.ProtocolError`)."""
        conn = self._conn
        if conn is None:
            return
        pending = b""
        try:
            conn.sock.settimeout(idle)
            for piece in conn.body(self._head):
                lines, pending = lines_of(pending, piece)
                yield from lines
        except TimeoutError:
            self._drop()
            return
        except BaseException:
            self._drop()
            raise
        self._conn = None
        self._pool._done(conn, self._head.keep_alive)
        if pending:
            yield pending

    def read(self) -> bytes:
        """The whole body (an error's)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return self.content
        try:
            self.content = b"".join(conn.body(self._head))
        except BaseException:
            conn.close()
            raise
        self._pool._done(conn, self._head.keep_alive)
        return self.content

    def shutdown(self) -> None:
        """End a read blocked on this stream (from another thread)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
