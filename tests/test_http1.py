"""The lean HTTP/1.1 client that carries plain requests (lockheed._http1).

On the real API server: a locker built from a kubeconfig uses it, and a
kept-alive connection that died while idle in the pool costs nothing but a
new connection (the renewal still succeeds, with one PUT). Against a small
local HTTP server: the answer framings the server may choose (chunked,
Content-Length, until close) are read correctly, and a connection is reused
only when the server allows it.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockheed import AsyncConfigMapLocker, AsyncLock, ConfigMapLocker, Lock
from lockheed._http1 import Endpoint, Response
from lockheed._sync.http1 import Http1Pool
from lockheed._sync.renewer import MAX_WORKERS


def _kill_idle(pool: object) -> int:
    """Shut down every idle connection of a pool under it (as a server that
    dropped them would); return how many there were."""
    idle = list(pool._idle)  # type: ignore[attr-defined]
    for conn in idle:
        sock = conn.sock if hasattr(conn, "sock") else conn.writer.get_extra_info("socket")
        sock.shutdown(socket.SHUT_RDWR)
    return len(idle)


def test_a_dead_kept_alive_connection_is_replaced(
    lockheed_namespace: str, lockheed_kubeconfig: Path
) -> None:
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
        assert locker.api.lean is not None  # a client certificate: the lean client serves it
        lock = Lock("lean", locker).with_duration(30)
        lock.acquire()
        assert _kill_idle(locker.api.lean) >= 1
        lock.renew()  # on a new connection
        assert lock.held
        lock.release()
        assert not lock.held


def test_a_dead_kept_alive_connection_is_replaced_async(
    lockheed_namespace: str, lockheed_kubeconfig: Path
) -> None:
    async def main() -> None:
        async with AsyncConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
            assert locker.api.lean is not None
            lock = AsyncLock("lean-async", locker).with_duration(30)
            await lock.acquire()
            idle = list(locker.api.lean._idle)
            assert _kill_idle(locker.api.lean) >= 1
            for _ in range(500):  # the loop notices the end of a connection when it reads
                if all(conn.stale() for conn in idle):
                    break
                await asyncio.sleep(0.01)
            await lock.renew()
            assert lock.held
            await lock.release()

    asyncio.run(main())


def test_closing_the_async_client_leaves_no_socket_to_the_collector(
    lockheed_namespace: str, lockheed_kubeconfig: Path
) -> None:
    """Closed connections are shut at once: none is left for garbage
    collection to find open after its event loop ended (which pytest, with
    warnings as errors, pins on whatever test happens to run next)."""

    async def main() -> None:
        async with AsyncConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
            assert locker.api.lean is not None
            locks = [AsyncLock(f"shut-{i}", locker).with_duration(30) for i in range(3)]
            await asyncio.gather(*(lock.acquire() for lock in locks))  # several connections
            await asyncio.gather(*(lock.release() for lock in locks))
            assert locker.api.lean._idle  # kept alive until the locker closes

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(main())  # no turn of the loop after the close
        finally:
            loop.close()
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


def test_closing_the_sync_client_leaves_no_socket_to_the_collector(
    lockheed_namespace: str, lockheed_kubeconfig: Path
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
            assert locker.api.lean is not None
            locks = [Lock(f"shut-sync-{i}", locker).with_duration(30) for i in range(3)]
            with ThreadPoolExecutor(3) as pool:  # several connections at once
                list(pool.map(lambda lock: lock.acquire(), locks))
                list(pool.map(lambda lock: lock.release(), locks))
            assert locker.api.lean._idle
        del locker, locks
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


# ---------------------------------------------------------- a local HTTP server

ANSWERS = {
    "/chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nDate: x\r\n\r\n"
        b'5\r\n{"a":\r\n3;ext=1\r\n 1}\r\n0\r\n\r\n'
    ),
    "/length": b'HTTP/1.1 409 Conflict\r\nContent-Length: 7\r\n\r\n{"b":2}',
    "/close": b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"c":3}',
    "/together": b'HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{"d":4}',
    # Watch events as the API server streams them, but cut anywhere: an event
    # in two chunks, two events in one, a last line without its newline.
    "/watch": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"".join(
        b"%x\r\n%s\r\n" % (len(c), c) for c in [b'{"e"', b':1}\n{"e":2', b'}\n\n{"e":3', b"}"]
    )
    + b"0\r\n\r\n",
    # One event, then nothing (the connection stays open).
    "/quiet": b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n{"e":1}\n\r\n',
}
# The server answers /together only once this many requests for it are in at once.
TOGETHER = threading.Barrier(MAX_WORKERS, timeout=30.0)


@pytest.fixture
def server() -> Iterator[tuple[int, list[int]]]:
    """A server answering each request line from ANSWERS; yields its port and,
    per accepted connection, how many requests it carried."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    carried: list[int] = []

    def serve(conn: socket.socket) -> None:
        index = len(carried)
        carried.append(0)
        reader = conn.makefile("rb")
        with conn, reader:
            while True:
                line = reader.readline()
                if not line:
                    return
                while reader.readline() not in (b"\r\n", b""):
                    pass
                carried[index] += 1
                path = line.split()[1].decode()
                if path == "/together":
                    TOGETHER.wait()
                conn.sendall(ANSWERS[path])
                if path == "/close":
                    return
                if path == "/quiet":
                    reader.read()  # until the client closes
                    return

    def accept() -> None:
        with listener:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield port, carried
    listener.close()


LocalPool = tuple[Http1Pool, list[int]]


@pytest.fixture
def local_pool(server: tuple[int, list[int]]) -> Iterator[LocalPool]:
    """A sync pool to the local server, closed after the test; and the
    server's count of requests per connection."""
    port, carried = server
    pool = Http1Pool(Endpoint("127.0.0.1", port, None, f"127.0.0.1:{port}"))
    yield pool, carried
    pool.close()


def test_framings_and_reuse(local_pool: LocalPool) -> None:
    pool, carried = local_pool
    chunked = pool.request("GET", "/chunked", None, 5.0)
    assert (chunked.status_code, chunked.json()) == (200, {"a": 1})
    assert chunked.headers["date"] == "x"
    length = pool.request("PUT", "/length", b"{}", 5.0)
    assert (length.status_code, length.json()) == (409, {"b": 2})
    assert carried == [2]  # both on one kept-alive connection
    closing = pool.request("GET", "/close", None, 5.0)
    assert closing.json() == {"c": 3}
    again = pool.request("GET", "/length", None, 5.0)
    assert again.json() == {"b": 2}
    assert carried == [3, 1]  # the server closed the first: a new one


def test_as_many_connections_as_renewals_at_once_are_kept(
    local_pool: LocalPool,
) -> None:
    # The renewer runs up to MAX_WORKERS renewals at once; a pool that kept
    # fewer connections closed the rest after each burst and opened them again
    # (a TLS handshake each) for the next one.
    pool, carried = local_pool
    with ThreadPoolExecutor(MAX_WORKERS) as threads:
        for _ in range(2):
            answers = list(
                threads.map(
                    lambda _: pool.request("GET", "/together", None, 30.0), range(MAX_WORKERS)
                )
            )
            assert {a.status_code for a in answers} == {200}
    assert carried == [2] * MAX_WORKERS  # the second burst reused every connection


def test_a_stream_is_read_line_by_line_whatever_its_chunks(
    local_pool: LocalPool,
) -> None:
    pool, carried = local_pool
    stream = pool.stream("/watch", 5.0)
    assert stream.status_code == 200
    assert list(stream.lines(5.0)) == [b'{"e":1}', b'{"e":2}', b"", b'{"e":3}']
    assert pool.request("GET", "/length", None, 5.0).json() == {"b": 2}
    assert carried == [2]  # read to its end: the connection went back to the pool


def test_an_idle_stream_ends_and_closes_its_connection(local_pool: LocalPool) -> None:
    pool, carried = local_pool
    stream = pool.stream("/quiet", 5.0)
    assert list(stream.lines(0.2)) == [b'{"e":1}']  # then 0.2 s without a byte
    assert pool.request("GET", "/length", None, 5.0).json() == {"b": 2}
    assert carried == [1, 1]  # the idle stream's connection was not reused


def test_an_async_stream_is_read_line_by_line_and_ends_when_idle(
    server: tuple[int, list[int]],
) -> None:
    from lockheed._async.http1 import Http1Pool as AsyncHttp1Pool

    port, carried = server

    async def main() -> tuple[list[bytes], list[bytes]]:
        pool = AsyncHttp1Pool(Endpoint("127.0.0.1", port, None, f"127.0.0.1:{port}"))
        try:
            whole = [line async for line in (await pool.stream("/watch", 5.0)).lines(5.0)]
            quiet = [line async for line in (await pool.stream("/quiet", 5.0)).lines(0.2)]
            assert (await pool.request("GET", "/length", None, 5.0)).json() == {"b": 2}
            return whole, quiet
        finally:
            await pool.aclose()

    whole, quiet = asyncio.run(main())
    assert whole == [b'{"e":1}', b'{"e":2}', b"", b'{"e":3}']
    assert quiet == [b'{"e":1}']
    # /quiet reused /watch's connection and closed it when idle: /length needed a new one
    assert carried == [2, 1]


def _batch(
    flavour: str, port: int, batches: list[list[str]], timeout: float = 5.0
) -> list[list[Any]]:
    """Each batch of GETs pipelined on the sync or the async pool (one pool for
    all); per batch, each answer's status and JSON, or its error's type."""

    def shown(answers: list[Any]) -> list[Any]:
        return [(a.status_code, a.json()) if isinstance(a, Response) else type(a) for a in answers]

    endpoint = Endpoint("127.0.0.1", port, None, f"127.0.0.1:{port}")
    calls = [[("GET", path, None) for path in batch] for batch in batches]
    if flavour == "sync":
        pool = Http1Pool(endpoint)
        try:
            return [shown(pool.request_batch(c, timeout)) for c in calls]
        finally:
            pool.close()
    from lockheed._async.http1 import Http1Pool as AsyncHttp1Pool

    async def main() -> list[list[Any]]:
        pool = AsyncHttp1Pool(endpoint)
        try:
            return [shown(await pool.request_batch(c, timeout)) for c in calls]
        finally:
            await pool.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_batch_is_pipelined_on_one_connection(
    server: tuple[int, list[int]], flavour: str
) -> None:
    port, carried = server
    answers = _batch(flavour, port, [["/length", "/chunked", "/length"], ["/length"] * 2])
    assert answers == [
        [(409, {"b": 2}), (200, {"a": 1}), (409, {"b": 2})],
        [(409, {"b": 2})] * 2,
    ]
    assert carried == [5]  # one connection, kept for the second batch


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_requests_after_the_connection_closed_are_left_unanswered(
    server: tuple[int, list[int]], flavour: str
) -> None:
    port, carried = server
    answers = _batch(flavour, port, [["/length", "/close", "/length", "/length"], ["/length"]])
    first, second = answers
    assert first[:2] == [(409, {"b": 2}), (200, {"c": 3})]
    # never answered, never sent again: a write's outcome is then unknown
    assert all(issubclass(error, ConnectionError) for error in first[2:]), first
    assert second == [(409, {"b": 2})]
    assert carried == [2, 1]  # the server read two; the next batch had a new connection


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_batch_whose_answers_do_not_all_come_in_time(
    server: tuple[int, list[int]], flavour: str
) -> None:
    port, carried = server
    answers = _batch(flavour, port, [["/length", "/quiet", "/length"], ["/length"]], timeout=2.0)
    first, second = answers
    assert first == [(409, {"b": 2}), TimeoutError, TimeoutError]
    assert second == [(409, {"b": 2})]
    assert len(carried) == 2  # the late connection was closed, not reused


@pytest.fixture
def stalling_kubeconfig(
    lockheed_kubeconfig: Path, tmp_path: Path
) -> Iterator[tuple[Path, threading.Event]]:
    """The test cluster's kubeconfig, pointed at a server that accepts
    connections and never says a word (a TLS handshake that never ends); and
    an event set once it has accepted one."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    config = yaml.safe_load(lockheed_kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{listener.getsockname()[1]}"
    path = tmp_path / "stalling.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    yield path, accepted
    listener.close()
    for conn in held:
        conn.close()


def test_a_watch_left_while_it_connects_leaves_no_socket_to_the_collector(
    lockheed_namespace: str, stalling_kubeconfig: tuple[Path, threading.Event]
) -> None:
    """A waiter that is cancelled (or whose wait ends) while its watch is still
    in its TLS handshake closes that connection: none is left for garbage
    collection to find open, in whatever test runs then."""
    from lockheed._async.kube import AsyncKubeAPI
    from lockheed._async.watcher import Feed

    path, accepted = stalling_kubeconfig

    async def main() -> None:
        api = AsyncKubeAPI("configmaps", lockheed_namespace, config=path)
        try:
            feed = Feed(None).start(api.watch("stalled", None, 30.0))
            sub = feed.subscribe()
            await asyncio.get_running_loop().run_in_executor(None, accepted.wait, 30.0)
            assert accepted.is_set()
            await feed.leave(sub)  # cancels the reader mid-handshake
        finally:
            await api.aclose()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
