"""The lean HTTP/1.1 client, blocking sockets (twin of :mod:`lockheed._async.http1`).

See :mod:`lockheed._http1` for why it exists and what it serves. A pool keeps
up to :data:`~lockheed._http1.IDLE_CONNECTIONS` kept-alive connections; any
thread takes one, sends its request in one write, reads the answer, and
gives the connection back only after a complete exchange that the server did
not mark to close.

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

import select
import socket
import ssl
import threading

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

    def exchange(self, method: str, data: bytes, timeout: float) -> tuple[Response, bool]:
        """Send ``data``; return the response and whether the connection may be kept.

        Raises :class:`_Unanswered` when the connection failed before a byte
        of the answer arrived."""
        reader = self.reader
        head = bytearray()
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(data)
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
        parsed = parse_head(method, bytes(head))
        if parsed.chunked:
            parts = []
            while True:
                size = chunk_size(reader.readline(MAX_HEAD))
                if size == 0:
                    while reader.readline(MAX_HEAD) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                parts.append(_exactly(reader, size))
                reader.readline(MAX_HEAD)
            body = b"".join(parts)
        elif parsed.length is not None:
            body = _exactly(reader, parsed.length)
        else:
            body = reader.read()
        return Response(parsed.status, parsed.headers, body), parsed.keep_alive


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
        data = request_bytes(self.endpoint, method, target, body, auth)
        conn = self._take()
        reused = conn is not None
        while True:
            if conn is None:
                conn = _Connection(self.endpoint, timeout)
            try:
                resp, keep = conn.exchange(method, data, timeout)
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

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
