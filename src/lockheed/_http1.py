"""A lean HTTP/1.1 exchange for the API's requests and watches (no I/O here).

Renewal is the one request a process sends all the time (1,000 held locks at a
10 s interval are 100 PUTs a second), and most of its CPU went to the general
HTTP client's per-request machinery (URL parsing and merging, header models,
the connection pool's state machine), not to TLS or JSON. The transports
therefore send their plain requests (GET, POST, PUT, a LIST's pages) with the
small client in ``_async/http1.py`` / ``_sync/http1.py``, over the very TLS
context and credentials lightkube builds from the kubeconfig, on kept-alive
connections. Watches are read with it too (a ``Stream``: the answer line by
line as it arrives): a waiter in line reads every change of a busy lock, and
a task cancelled while its watch connected must close that connection, which
``httpx2`` left half-open for the garbage collector when the cancellation
came during the TLS handshake. A transport whose ``httpx2`` clients carry
event hooks (a test's counters) keeps everything on ``httpx2``.

This module holds what both halves share: which configurations the lean
client serves (:func:`endpoint_for`; anything else, such as an exec plugin or
a proxy, stays on ``httpx2``), the request's bytes, and the response's head
and framing.

Failure semantics: a response that cannot be parsed raises
:class:`ProtocolError` (a ``ConnectionError``: the transports report it, like
a broken connection, as a transient :class:`~lockheed.LockBackendError`). A
token file that cannot be read raises :class:`~lockheed.LockConfigError`.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from ._errors import LockConfigError

__all__ = [
    "CLOSED_EARLY",
    "Endpoint",
    "Pace",
    "ProtocolError",
    "Response",
    "batch_bytes",
    "endpoint_for",
    "lines_of",
    "parse_head",
    "request_bytes",
    "request_target",
]

MAX_HEAD = 64 * 1024  # a response head longer than this is refused
IDLE_CONNECTIONS = 16  # kept-alive connections a pool keeps: as many as renewals run at once
STREAM_READ = 64 * 1024  # most bytes one read of a streamed body asks for
# A pipelined batch (the renewer's writes) is read after this share of the time
# its answers took in the last batches, per answer, and at most this long.
BATCH_PACE = 0.8
BATCH_PAUSE_CAP = 0.25


class ProtocolError(ConnectionError):
    """The server's answer is not HTTP/1.1 as expected; the connection is dropped."""


class Response:
    """What the transports need of a response (``httpx2.Response``'s names)."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes):
        self.status_code = status_code
        self.headers = headers  # names in lower case
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _TokenFile:
    """A bearer token read from a file, read again when the server answers 401
    (a service account's token is rotated by the kubelet)."""

    def __init__(self, path: str, where: str):
        self.path, self.where = path, where
        self.header: str | None = None

    def read(self) -> str:
        try:
            token = Path(self.path).read_text().strip()
        except OSError as exc:  # worded as with the httpx2 client (lightkube's auth)
            why = (
                "not found"
                if isinstance(exc, FileNotFoundError)
                else f"cannot be read: {exc.strerror or type(exc).__name__}"
            )
            raise LockConfigError(
                f"{self.where}: cannot get credentials: Token file {self.path} {why}"
            ) from None
        self.header = f"Bearer {token}"
        return self.header


@dataclass
class Endpoint:
    """Where and how the lean client connects."""

    host: str
    port: int
    ssl: ssl.SSLContext | None  # None: plain http
    authority: str  # the Host header
    authorization: str | None = None
    token_file: _TokenFile | None = None

    def auth_header(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.header or self.token_file.read()
        return self.authorization


def _proxied(scheme: str, host: str) -> bool:
    import urllib.request  # here, not at import: it is a tenth of ``import lockheed``

    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    bypass: Any = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009 (untyped)
    return not bypass(host, proxies)


def endpoint_for(config: Any, verify: Any, where: str = "the kubeconfig") -> Endpoint | None:
    """The lean client's endpoint for a lightkube ``SingleConfig`` whose ``httpx2``
    client was built with ``verify`` (its SSL context), or None when the lean
    client cannot serve it the same way (an exec plugin or auth provider, a
    proxy, a TLS setting that is not an SSL context). ``where`` names the
    configuration in errors."""
    server = urlsplit(str(config.cluster.server))
    user = config.user
    if server.scheme not in ("https", "http") or not server.hostname or user is None:
        return None
    if server.path not in ("", "/") or server.query:
        return None  # a server URL with a path prefix: leave it to the full client
    if getattr(user, "exec", None) or getattr(user, "auth_provider", None):
        return None
    if _proxied(server.scheme, server.hostname):
        return None
    context: ssl.SSLContext | None = None
    if server.scheme == "https":
        if not isinstance(verify, ssl.SSLContext):
            return None
        context = verify
    port = server.port or (443 if server.scheme == "https" else 80)
    endpoint = Endpoint(server.hostname, port, context, server.netloc.rpartition("@")[2])
    if user.token_file is not None:
        endpoint.token_file = _TokenFile(os.fspath(user.token_file), where)
    elif user.token is not None:
        endpoint.authorization = f"Bearer {user.token}"
    elif user.username and user.password:
        pair = f"{user.username}:{user.password}".encode()
        endpoint.authorization = "Basic " + base64.b64encode(pair).decode("ascii")
    return endpoint


def request_target(path: str, params: Mapping[str, str] | None) -> str:
    return f"{path}?{urlencode(params)}" if params else path


class Pace:
    """How long a pool's pipelined batch waits, once sent, before it reads its
    answers: :data:`BATCH_PACE` of the time per answer that the last batches
    answered in full took, times the batch's size, at most
    :data:`BATCH_PAUSE_CAP` (nothing for a single request, or before any
    batch was answered)."""

    __slots__ = ("per_answer",)

    def __init__(self) -> None:
        self.per_answer = 0.0  # seconds per answer in the last batches

    def pause(self, n: int) -> float:
        return 0.0 if n < 2 else min(self.per_answer * n * BATCH_PACE, BATCH_PAUSE_CAP)

    def answered(self, n: int, seconds: float) -> None:
        """A batch of ``n`` was answered in full ``seconds`` after it was sent."""
        spent = seconds / n
        self.per_answer = spent if not self.per_answer else 0.7 * self.per_answer + 0.3 * spent


def batch_bytes(
    endpoint: Endpoint, requests: Sequence[tuple[str, str, bytes | None]], auth: str | None
) -> bytes:
    """Pipelined requests ``(method, target, body)``, to be sent in a single write."""
    return b"".join(request_bytes(endpoint, m, t, b, auth) for m, t, b in requests)


# What a request of a batch is left with when an earlier answer closed the connection.
CLOSED_EARLY = "the server closed the connection after an earlier answer"


def request_bytes(
    endpoint: Endpoint, method: str, target: str, body: bytes | None, auth: str | None
) -> bytes:
    """One request, head and body, to be sent in a single write."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {endpoint.authority}"]
    lines.append("Accept: application/json")
    lines.append("User-Agent: lockheed")
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body is not None else head


@dataclass(frozen=True)
class Head:
    status: int
    headers: dict[str, str]
    length: int | None  # Content-Length; None with chunked or until-close framing
    chunked: bool
    keep_alive: bool


def parse_head(method: str, raw: bytes) -> Head:
    """The status line and headers (``raw`` ends with the blank line)."""
    try:
        text = raw.decode("latin-1")
        status_line, *lines = text.split("\r\n")
        version, code, *_ = status_line.split(" ", 2)
        status = int(code)
    except ValueError:
        raise ProtocolError(f"malformed status line {raw[:80]!r}") from None
    if not version.startswith("HTTP/1.") or not 100 <= status <= 599:
        raise ProtocolError(f"unexpected status line {raw[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"malformed header line {line[:80]!r}")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection and version == "HTTP/1.1"
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    length: int | None = None
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        length = 0
    elif not chunked and "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise ProtocolError("malformed Content-Length") from None
        if length < 0:
            raise ProtocolError("negative Content-Length")
    elif not chunked:
        keep_alive = False  # the body runs until the server closes the connection
    return Head(status, headers, length, chunked, keep_alive)


def lines_of(pending: bytes, piece: bytes) -> tuple[list[bytes], bytes]:
    """The complete lines of a stream's ``pending`` bytes followed by ``piece``
    (without their newline), and the bytes after the last newline."""
    *lines, rest = (pending + piece if pending else piece).split(b"\n")
    return lines, rest


def chunk_size(line: bytes) -> int:
    try:
        size = int(line.split(b";", 1)[0].strip(), 16)
    except ValueError:
        raise ProtocolError(f"malformed chunk size {line[:40]!r}") from None
    if size < 0:
        raise ProtocolError("negative chunk size")
    return size
