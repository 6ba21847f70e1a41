"""Network faults between a client and the API server: a TCP proxy on loopback.

:class:`FaultProxy` listens on ``127.0.0.1`` and forwards every connection to
the API server byte for byte, so TLS passes through untouched: the client
still verifies the server's certificate (which must be valid for
``127.0.0.1``, as the local control plane's and kind's are) and still
authenticates with its own credentials. :meth:`FaultProxy.kubeconfig` writes a
copy of a kubeconfig that points at the proxy.

Faults are switched on and off at run time, while connections are open::

    with FaultProxy.for_kubeconfig(admin_kubeconfig) as proxy:
        locker = ConfigMapLocker(namespace, config=proxy.kubeconfig())
        with proxy.fault(Blackhole()):
            ...   # requests through the proxy now hang
        with proxy.fault(Refuse(), Reset()) as run:
            ...   # no new connection is accepted, open ones were reset
        assert run.injected > 0

The faults are :class:`Latency`, :class:`Blackhole`, :class:`Reset`,
:class:`Refuse` and :class:`DropResponse` (an ambiguous write: the request
reaches the server, its response never reaches the client). ``Latency``,
``Blackhole`` and ``Reset`` apply to ``connections="all"`` (the default),
only to those opened after the fault started (``"new"``) or only to those
open when it started (``"open"``). Faults active together combine; latencies
add up.

Failure semantics: the proxy never changes, reorders or invents a byte.
Bytes held by a blackhole or a latency are delivered, in order, once the fault
ends (a healed partition); a reset or dropped response closes both sides of
the connection with a TCP RST. If the upstream cannot be reached, the client's
connection is reset. A fault that cannot be applied (the proxy's port was
taken while :class:`Refuse` had closed it) raises
:class:`~lockheed.testing.ClusterError` when it ends. Everything runs on one
event-loop thread and stops within seconds on :meth:`FaultProxy.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import socket
import struct
import tempfile
import threading
import weakref
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

import yaml

from ._cluster import ClusterError

__all__ = [
    "Blackhole",
    "DropResponse",
    "Fault",
    "FaultProxy",
    "FaultRun",
    "Latency",
    "Refuse",
    "Reset",
]

LOOPBACK = "127.0.0.1"
Scope = Literal["all", "new", "open"]
_SCOPES = ("all", "new", "open")
_CHUNK = 64 * 1024
_QUEUED_CHUNKS = 16  # per direction: beyond this, the proxy stops reading (backpressure)
_CONNECT_TIMEOUT = 10.0
_CALL_TIMEOUT = 15.0
_STOP_TIMEOUT = 5.0

T = TypeVar("T")


def _check_scope(scope: str) -> None:
    if scope not in _SCOPES:
        raise ValueError(f"connections must be one of {', '.join(_SCOPES)}, not {scope!r}")


def _check_seconds(what: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, not {value!r}")


@dataclass(frozen=True)
class Latency:
    """Delay bytes on their way: a slow link.

    Each chunk is forwarded ``to_server`` (client to server) or ``to_client``
    seconds after it arrived, in order, so a request and its response take
    ``to_server + to_client`` longer. With ``per_chunk``, a chunk also waits
    that long after the previous one was sent, which slows bulk transfers too.
    """

    to_server: float = 0.0
    to_client: float = 0.0
    per_chunk: bool = False
    connections: Scope = "all"
    kind: ClassVar[str] = "latency"

    def __post_init__(self) -> None:
        _check_seconds("Latency.to_server", self.to_server)
        _check_seconds("Latency.to_client", self.to_client)
        _check_scope(self.connections)


@dataclass(frozen=True)
class Blackhole:
    """Keep connections, accept new ones, but pass nothing in either direction.

    A client waiting for an answer times out. What was held is delivered when
    the fault ends.
    """

    connections: Scope = "all"
    kind: ClassVar[str] = "blackhole"

    def __post_init__(self) -> None:
        _check_scope(self.connections)


@dataclass(frozen=True)
class Reset:
    """Reset (TCP RST) the connections the fault covers.

    Open connections are reset when the fault starts; while it lasts, new ones
    are accepted and reset at once.
    """

    connections: Scope = "all"
    kind: ClassVar[str] = "reset"

    def __post_init__(self) -> None:
        _check_scope(self.connections)


@dataclass(frozen=True)
class Refuse:
    """Close the proxy's listening socket: new connections are refused
    (``ECONNREFUSED``); open ones are left alone. The port is listened on
    again when the fault ends."""

    kind: ClassVar[str] = "refuse"


@dataclass(frozen=True)
class DropResponse:
    """An ambiguous write: forward a request to the server, swallow its
    response and reset the connection, so the client gets an error although
    the server did what it asked.

    It acts on connections open when the fault starts (through TLS, a new
    connection's handshake cannot be told from a request): on each, ``skip``
    requests pass, and the response to the next one is dropped, until
    ``count`` responses have been dropped in all.
    """

    skip: int = 0
    count: int = 1
    kind: ClassVar[str] = "drop_response"

    def __post_init__(self) -> None:
        for what, value, least in (("skip", self.skip, 0), ("count", self.count, 1)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"DropResponse.{what} must be an int, not {type(value).__name__}")
            if value < least:
                raise ValueError(f"DropResponse.{what} must be >= {least}, not {value}")


Fault = Latency | Blackhole | Reset | Refuse | DropResponse
_FAULT_TYPES = (Latency, Blackhole, Reset, Refuse, DropResponse)


class FaultRun:
    """One activation of one or more faults; returned by :meth:`FaultProxy.fault`."""

    def __init__(self, proxy: FaultProxy, faults: tuple[Fault, ...], watermark: int) -> None:
        self.faults = faults
        self._proxy = proxy
        self._watermark = watermark  # connections numbered <= this were open at the start
        self._injected = 0
        self._drops_left = sum(f.count for f in faults if isinstance(f, DropResponse))
        self._active = True

    def __repr__(self) -> str:
        state = "active" if self._active else "ended"
        return f"<FaultRun {self.faults} {state} injected={self._injected}>"

    @property
    def injected(self) -> int:
        """How often the faults acted: chunks delayed or held, connections reset,
        responses dropped, and 1 for a :class:`Refuse` that closed the listener."""
        return self._injected

    @property
    def active(self) -> bool:
        return self._active

    def end(self) -> None:
        """End the faults (idempotent): held bytes flow again, the port listens again."""
        if self._active:
            self._proxy._call(self._proxy._deactivate(self))

    def _covers(self, fault: Fault, seq: int) -> bool:
        scope = getattr(fault, "connections", "all")
        if scope == "all":
            return True
        return seq > self._watermark if scope == "new" else seq <= self._watermark


@dataclass(eq=False)
class _Drop:
    """How far a connection is towards its dropped response."""

    run: FaultRun
    skip: int
    requests: int = 0
    awaiting_response: bool = False


@dataclass(eq=False)
class _Conn:
    seq: int
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    drops: list[_Drop] = field(default_factory=list)
    closed: bool = False


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close with a TCP RST (SO_LINGER 0) rather than a FIN."""
    if writer is None or writer.transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """A TCP proxy on ``127.0.0.1`` in front of ``upstream_host:upstream_port``.

    ``start()`` (or ``with``) binds a free port (or ``port``) and serves from a
    background thread; ``stop()`` closes every connection, removes the
    kubeconfigs it wrote and is idempotent.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        port: int = 0,
        source_kubeconfig: Path | str | None = None,
    ) -> None:
        if not isinstance(upstream_port, int) or not 0 < upstream_port < 65536:
            raise ValueError(f"upstream_port must be a TCP port, not {upstream_port!r}")
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise ValueError(f"port must be a TCP port or 0 (any free one), not {port!r}")
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self._source = None if source_kubeconfig is None else Path(source_kubeconfig)
        self._server_path = ""
        self._scheme = "https"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._conns: dict[int, _Conn] = {}
        self._serving: set[asyncio.Task[Any]] = set()
        # Every stream writer made, so that stopping closes each one for certain.
        self._writers: weakref.WeakSet[asyncio.StreamWriter] = weakref.WeakSet()
        self._runs: list[FaultRun] = []
        self._last_seq = 0
        self._changed: asyncio.Event | None = None
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._accepted = 0
        self._closing = False
        self._dir: Path | None = None
        self._state = "new"

    @classmethod
    def for_kubeconfig(cls, kubeconfig: Path | str, *, port: int = 0) -> FaultProxy:
        """A proxy in front of the server of ``kubeconfig``'s current context;
        :meth:`kubeconfig` with no argument then writes that kubeconfig's copy."""
        path = Path(kubeconfig).expanduser()
        cluster = _current_cluster(_load_kubeconfig(path), path)
        server = str(cluster.get("server") or "")
        parts = urlsplit(server)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{path}: cannot proxy server {server!r}")
        default = 443 if parts.scheme == "https" else 80
        proxy = cls(parts.hostname, parts.port or default, port=port, source_kubeconfig=path)
        proxy._scheme, proxy._server_path = parts.scheme, parts.path.rstrip("/")
        return proxy

    def __repr__(self) -> str:
        host, port = self.upstream
        return f"<FaultProxy {self._state} {LOOPBACK}:{self.port} -> {host}:{port}>"

    # -- lifecycle -------------------------------------------------------

    def start(self) -> FaultProxy:
        """Listen and serve from a background thread; returns ``self``."""
        if self._state != "new":
            raise ClusterError(f"a FaultProxy can be started once (it is {self._state})")
        self._state = "running"
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=loop.run_forever, name="lockheed-fault-proxy", daemon=True
        )
        self._thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close the listener and every connection, end the thread, remove written files."""
        if self._state != "running":
            return
        self._state = "stopped"
        loop, thread = self._loop, self._thread
        assert loop is not None and thread is not None
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_STOP_TIMEOUT)
        if not thread.is_alive():
            # The loop has stopped: run it here once more to close every transport
            # and end every task, so nothing is left for the garbage collector.
            with contextlib.suppress(Exception):
                loop.run_until_complete(self._sweep())
            loop.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- information -----------------------------------------------------

    @property
    def url(self) -> str:
        """The server URL clients use: ``https://127.0.0.1:<port>`` (and the original path)."""
        self._check_running()
        return f"{self._scheme}://{LOOPBACK}:{self.port}{self._server_path}"

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        return self._accepted

    @property
    def open_connections(self) -> int:
        """Connections open now (both sides connected)."""
        self._check_running()
        return self._call(self._count_open())

    @property
    def injected(self) -> Counter[str]:
        """What the faults did so far, by kind (see :attr:`FaultRun.injected`)."""
        with self._counts_lock:
            return Counter(self._counts)

    # -- faults ----------------------------------------------------------

    def inject(self, *faults: Fault) -> FaultRun:
        """Start ``faults`` now (they have taken effect when this returns); end
        them with :meth:`FaultRun.end`. :meth:`fault` is the context manager."""
        if not faults:
            raise ValueError("inject needs at least one fault")
        for fault in faults:
            if not isinstance(fault, _FAULT_TYPES):
                raise TypeError(f"not a fault: {fault!r}")
        self._check_running()
        return self._call(self._activate(tuple(faults)))

    @contextlib.contextmanager
    def fault(self, *faults: Fault) -> Iterator[FaultRun]:
        """``with proxy.fault(Blackhole()) as run:``: the faults last for the block."""
        run = self.inject(*faults)
        try:
            yield run
        finally:
            run.end()

    # -- kubeconfig ------------------------------------------------------

    def kubeconfig(self, source: Path | str | None = None, path: Path | str | None = None) -> Path:
        """Write a copy of kubeconfig ``source`` whose current cluster is reached
        through this proxy; return its path.

        ``source`` defaults to the kubeconfig given to :meth:`for_kubeconfig`;
        ``path`` to a new file in a directory removed by :meth:`stop`.
        Credentials and the CA are kept (relative file paths made absolute).
        """
        self._check_running()
        source_path = Path(source).expanduser() if source is not None else self._source
        if source_path is None:
            raise ValueError("kubeconfig() needs a source kubeconfig for this proxy")
        document = _load_kubeconfig(source_path)
        _absolute_paths(document, source_path.parent)
        _current_cluster(document, source_path)["server"] = self.url
        if path is None:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="lockheed-proxy-"))
            target = self._dir / f"{len(list(self._dir.iterdir()))}-{source_path.name}"
        else:
            target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(mode=0o600, exist_ok=True)
        target.write_text(yaml.safe_dump(document, sort_keys=False))
        return target

    # -- plumbing (the loop thread) ----------------------------------------

    def _check_running(self) -> None:
        if self._state != "running":
            raise ClusterError(f"the FaultProxy is {self._state}")

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_CALL_TIMEOUT)

    def _count(self, run: FaultRun, fault: Fault, n: int = 1) -> None:
        run._injected += n
        with self._counts_lock:
            self._counts[fault.kind] += n

    async def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((LOOPBACK, self.port))
            listener.listen(128)
            listener.setblocking(False)
        except OSError as exc:
            listener.close()
            raise ClusterError(f"the fault proxy cannot listen on port {self.port}: {exc}") from exc
        self.port = listener.getsockname()[1]
        self._listener = listener
        if self._changed is None:
            self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept)

    def _unlisten(self) -> None:
        """Close the listening socket: connection attempts are refused from now on."""
        listener, self._listener = self._listener, None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()

    def _accept(self) -> None:
        """Accept every pending connection and serve each from its own task."""
        while self._listener is not None:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: leave it in the backlog
                return
            sock.setblocking(False)
            task = asyncio.get_running_loop().create_task(self._serve(sock))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)

    async def _count_open(self) -> int:
        return sum(1 for c in self._conns.values() if c.upstream is not None)

    async def _shutdown(self) -> None:
        self._closing = True
        self._unlisten()
        for conn in list(self._conns.values()):
            self._close(conn, rst=False)
        for run in self._runs:
            run._active = False
        self._runs.clear()
        self._signal()
        if self._serving:
            await asyncio.wait(list(self._serving), timeout=_STOP_TIMEOUT)

    async def _sweep(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(3):  # connection_lost callbacks run on the next iterations
            await asyncio.sleep(0)

    def _signal(self) -> None:
        """Wake every pump waiting on a fault change."""
        if self._changed is not None:
            self._changed.set()
        self._changed = asyncio.Event()

    async def _until_changed(self, timeout: float | None = None) -> None:
        changed = self._changed
        assert changed is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)

    async def _activate(self, faults: tuple[Fault, ...]) -> FaultRun:
        run = FaultRun(self, faults, self._last_seq)
        self._runs.append(run)
        for fault in faults:
            if isinstance(fault, Reset):
                for conn in list(self._conns.values()):
                    if run._covers(fault, conn.seq):
                        self._close(conn, rst=True)
                        self._count(run, fault)
            elif isinstance(fault, Refuse) and self._listener is not None:
                self._unlisten()
                self._count(run, fault)
            elif isinstance(fault, DropResponse):
                for conn in self._conns.values():
                    if conn.upstream is not None:
                        conn.drops.append(_Drop(run, fault.skip))
        self._signal()
        return run

    async def _deactivate(self, run: FaultRun) -> None:
        if not run._active:
            return
        run._active = False
        self._runs.remove(run)
        for conn in self._conns.values():
            conn.drops = [d for d in conn.drops if d.run is not run]
        self._signal()
        refusing = any(isinstance(f, Refuse) for r in self._runs for f in r.faults)
        if self._listener is None and not refusing and not self._closing:
            await self._listen()

    def _covering(self, kind: type[Any], seq: int) -> Iterator[tuple[FaultRun, Any]]:
        for run in self._runs:
            for fault in run.faults:
                if isinstance(fault, kind) and run._covers(fault, seq):
                    yield run, fault

    def _close(self, conn: _Conn, *, rst: bool) -> None:
        if conn.closed:
            return
        conn.closed = True
        for writer in (conn.client, conn.upstream):
            if rst:
                _reset(writer)
            elif writer is not None:
                writer.transport.abort()
        current = asyncio.current_task()
        for task in conn.tasks:
            if task is not current:
                task.cancel()

    async def _serve(self, sock: socket.socket) -> None:
        if self._closing:
            sock.close()
            return
        try:
            reader, writer = await asyncio.open_connection(sock=sock)
            self._writers.add(writer)
        except OSError:
            sock.close()
            return
        self._accepted += 1
        self._last_seq += 1
        conn = _Conn(self._last_seq, writer)
        self._conns[conn.seq] = conn
        try:
            resets = list(self._covering(Reset, conn.seq))
            if resets:
                self._close(conn, rst=True)
                for run, fault in resets:
                    self._count(run, fault)
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.upstream), _CONNECT_TIMEOUT
                )
                self._writers.add(up_writer)
            except (OSError, asyncio.TimeoutError):
                self._close(conn, rst=True)  # what a client sees of an unreachable server
                return
            if conn.closed:  # reset while connecting
                _reset(up_writer)
                return
            conn.upstream = up_writer
            to_server: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUED_CHUNKS)
            to_client: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUED_CHUNKS)
            conn.tasks = [
                asyncio.create_task(self._read(conn, reader, to_server)),
                asyncio.create_task(self._read(conn, up_reader, to_client)),
                asyncio.create_task(self._forward(conn, to_server, up_writer, "to_server")),
                asyncio.create_task(self._forward(conn, to_client, writer, "to_client")),
            ]
            await asyncio.wait(conn.tasks)
        finally:
            self._close(conn, rst=False)
            self._conns.pop(conn.seq, None)

    async def _read(
        self, conn: _Conn, reader: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes]]
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await reader.read(_CHUNK)
                await queue.put((loop.time(), data))
                if not data:
                    return
        except OSError:  # the peer reset: pass the reset on
            self._close(conn, rst=True)

    async def _forward(
        self,
        conn: _Conn,
        queue: asyncio.Queue[tuple[float, bytes]],
        writer: asyncio.StreamWriter,
        direction: str,
    ) -> None:
        loop = asyncio.get_running_loop()
        last_sent = 0.0
        try:
            while True:
                received, data = await queue.get()
                await self._hold(conn, direction, received, last_sent)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                if direction == "to_server":
                    self._note_request(conn)
                elif self._drop_now(conn):
                    self._close(conn, rst=True)
                    return
                writer.write(data)
                await writer.drain()
                last_sent = loop.time()
        except OSError:
            self._close(conn, rst=True)

    async def _hold(self, conn: _Conn, direction: str, received: float, last_sent: float) -> None:
        """Wait while a blackhole or a latency holds this chunk back."""
        loop = asyncio.get_running_loop()
        counted: set[int] = set()
        while True:
            holes = list(self._covering(Blackhole, conn.seq))
            if holes:
                for run, fault in holes:
                    if id(run) not in counted:
                        counted.add(id(run))
                        self._count(run, fault)
                await self._until_changed()
                continue
            line = chunk = 0.0
            delays = []
            for run, fault in self._covering(Latency, conn.seq):
                delay = fault.to_server if direction == "to_server" else fault.to_client
                if delay > 0:
                    delays.append((run, fault))
                    if fault.per_chunk:
                        chunk += delay
                    else:
                        line += delay
            due = max(received + line, max(received, last_sent) + chunk)
            wait = due - loop.time()
            if wait <= 0:
                return
            for run, fault in delays:
                if id(run) not in counted:
                    counted.add(id(run))
                    self._count(run, fault)
            await self._until_changed(wait)

    def _note_request(self, conn: _Conn) -> None:
        """A client chunk goes out: a new request starts unless one is awaiting its answer."""
        for drop in conn.drops:
            if not drop.awaiting_response:
                drop.requests += 1
                drop.awaiting_response = True

    def _drop_now(self, conn: _Conn) -> bool:
        """A server chunk is about to go out: is it the response to drop?"""
        drop_it = False
        for drop in list(conn.drops):
            if not drop.awaiting_response:
                continue
            drop.awaiting_response = False
            if drop.requests <= drop.skip:
                continue
            conn.drops.remove(drop)
            run = drop.run
            if run._drops_left > 0 and run._active and not drop_it:
                run._drops_left -= 1
                fault = next(f for f in run.faults if isinstance(f, DropResponse))
                self._count(run, fault)
                drop_it = True
        return drop_it


# -- kubeconfig documents --------------------------------------------------


def _load_kubeconfig(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read kubeconfig {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a kubeconfig")
    return document


def _named(document: dict[str, Any], section: str, name: Any, path: Path) -> dict[str, Any]:
    for entry in document.get(section) or ():
        if isinstance(entry, dict) and entry.get("name") == name:
            inner = entry.get(section[:-1])
            if isinstance(inner, dict):
                return inner
    raise ValueError(f"{path}: no {section[:-1]} named {name!r}")


def _current_cluster(document: dict[str, Any], path: Path) -> dict[str, Any]:
    current = document.get("current-context")
    if not current:
        raise ValueError(f"{path} has no current-context")
    context = _named(document, "contexts", current, path)
    return _named(document, "clusters", context.get("cluster"), path)


_FILE_KEYS = {
    "clusters": ("certificate-authority",),
    "users": ("client-certificate", "client-key", "tokenFile"),
}


def _absolute_paths(document: dict[str, Any], base: Path) -> None:
    """Make the relative file references of a kubeconfig absolute (it is written elsewhere)."""
    for section, keys in _FILE_KEYS.items():
        for entry in document.get(section) or ():
            inner = entry.get(section[:-1]) if isinstance(entry, dict) else None
            if not isinstance(inner, dict):
                continue
            for key in keys:
                value = inner.get(key)
                if isinstance(value, str) and value and not Path(value).is_absolute():
                    inner[key] = str(base / value)
