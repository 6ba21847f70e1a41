"""Helpers for the lock tests: request counting, running the asyncio API
from the same test code as the sync API, and the command line's argv."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import httpx2 as httpx
import pytest

import blocking_calls
from lockheed import (
    AsyncConfigMapLocker,
    AsyncLeaseLocker,
    AsyncLock,
    AsyncMemoryLocker,
    AsyncSemaphore,
    ConfigMapLocker,
    LeaseLocker,
    Lock,
    MemoryLocker,
    Semaphore,
)
from lockheed._core import Effect
from lockheed._errors import LockBackendError

T = TypeVar("T")

# The tests that run a crowd of processes (32 contenders, the bench, Go and
# Python side by side). `make test` runs the suite on two pytest-xdist
# workers and gives this group to one of them, so no two crowds share the
# host's cores at once; beside a crowd, the other worker runs tests that
# mostly wait on leases.
CROWD = pytest.mark.xdist_group("crowd")


def lockheed_argv(
    *args: str,
    kubeconfig: str | os.PathLike[str] | None = None,
    namespace: str | None = None,
) -> list[str]:
    """The argv of ``python -m lockheed`` with ``args``; the cluster options given
    (``--kubeconfig``, ``--namespace``) go right after the subcommand ``args[0]``,
    ahead of its own arguments and of a ``--`` and the command after it."""
    cluster: list[str] = []
    if kubeconfig is not None:
        cluster += ["--kubeconfig", os.fspath(kubeconfig)]
    if namespace is not None:
        cluster += ["--namespace", namespace]
    return [sys.executable, "-m", "lockheed", *args[:1], *cluster, *args[1:]]


@contextlib.contextmanager
def as_foreground_job() -> Iterator[None]:
    """Processes started meanwhile take Ctrl-C (SIGINT) as a terminal's foreground
    job does, even when this test process ignores it: a shell starts a
    background job (``pytest &``) with SIGINT ignored, and a child inherits that
    and rightly keeps ignoring it. A handled signal is reset to its default
    action in a child that execs, so SIGINT is handled here while they start."""
    if (
        signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# Requests counters by the sync locker they count for; async twins count into the same.
_COUNTERS: weakref.WeakKeyDictionary[Any, Requests] = weakref.WeakKeyDictionary()


def _verb(request: httpx.Request) -> str:
    verb = {"POST": "create", "PUT": "update", "DELETE": "delete"}.get(request.method)
    if verb is not None:
        return verb
    if "watch" in request.url.params:
        return "watch"
    return "list" if request.url.path.endswith(("/configmaps", "/leases")) else "get"


class Requests:
    """Counts API requests by verb (get, create, update, watch, list), as sent on the wire."""

    def __init__(self, locker: Any):
        self.locker = locker
        self.counts: Counter[str] = Counter()
        if isinstance(locker, (ConfigMapLocker, LeaseLocker)):
            for client in {locker.api.client, locker.api.watch_client}:
                client.event_hooks = {"request": [self._hook], "response": []}
        _COUNTERS[locker] = self

    def _hook(self, request: httpx.Request) -> None:
        self.counts[_verb(request)] += 1

    async def _ahook(self, request: httpx.Request) -> None:
        self.counts[_verb(request)] += 1

    def attach_async(self, locker: AsyncConfigMapLocker | AsyncLeaseLocker) -> None:
        for client in {locker.api.client, locker.api.watch_client}:
            client.event_hooks = {"request": [self._ahook], "response": []}

    def snapshot(self) -> Counter[str]:
        if isinstance(self.locker, MemoryLocker):
            return Counter({k: v for k, v in self.locker.requests.items() if v})
        return Counter(self.counts)

    def since(self, before: Counter[str]) -> Counter[str]:
        now = self.snapshot()
        now.subtract(before)
        return +now

    def total_since(self, before: Counter[str]) -> int:
        return sum(self.since(before).values())


class FlakyLocker:
    """Delegates to a real locker, but fails every request while ``broken`` is set:
    a network partition between this process and the API server."""

    def __init__(self, inner: Any, broken: threading.Event | None = None):
        self.inner = inner
        self.prefix = inner.prefix
        self.clock = inner.clock
        self.broken = broken or threading.Event()

    def object_name(self, name: str) -> str:
        return str(self.inner.object_name(name))

    def execute(self, effect: Effect) -> Any:
        if self.broken.is_set():
            raise LockBackendError("connection refused (simulated partition)", transient=True)
        return self.inner.execute(effect)

    def list_records(self) -> Any:
        return self.inner.list_records()


class LoopThread:
    """An asyncio event loop in debug mode on its own thread; records every blocking
    call made on that thread (see :mod:`blocking_calls`) so tests can fail on them.

    Debug mode still logs slow callbacks, but they fail nothing: on a busy machine
    a callback is slow because its thread waited for a CPU, which says nothing
    about the code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_debug(True)
        self.blocking: list[str] = []
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()
        assert self.thread.ident is not None
        blocking_calls.watch(self.thread.ident, self.blocking)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        assert self.thread.ident is not None
        blocking_calls.unwatch(self.thread.ident)
        self.loop.close()


class SyncFacade:
    """An :class:`AsyncLock` driven from test code written for :class:`Lock`:
    each call runs on the loop thread and is awaited there."""

    def __init__(self, lock: AsyncLock, runner: LoopThread):
        self._lock = lock
        self._runner = runner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._lock, name)
        if name.startswith("with_") or name == "on_lost":

            def chained(*args: Any, **kwargs: Any) -> SyncFacade:
                attr(*args, **kwargs)
                return self

            return chained
        return attr

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> int:
        return self._runner.run(self._lock.acquire(blocking, timeout), timeout=None)

    def release(self) -> None:
        self._runner.run(self._lock.release())

    def renew(self) -> None:
        self._runner.run(self._lock.renew())

    def __enter__(self) -> SyncFacade:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Api:
    """Makes locks of one API (sync or async) on the store of a sync locker."""

    def __init__(self, name: str, runner: LoopThread | None):
        self.name = name
        self.runner = runner
        self._twins: dict[int, Any] = {}

    def twin(self, locker: Any) -> Any:
        """The async locker on the same store as sync ``locker``."""
        if id(locker) in self._twins:
            return self._twins[id(locker)]
        if isinstance(locker, FlakyLocker):
            twin: Any = FlakyLocker(self.twin(locker.inner), locker.broken)
        elif isinstance(locker, MemoryLocker):
            twin = AsyncMemoryLocker(locker)
        elif isinstance(locker, (ConfigMapLocker, LeaseLocker)):
            kind = AsyncLeaseLocker if isinstance(locker, LeaseLocker) else AsyncConfigMapLocker
            twin = kind(
                locker.namespace, prefix=locker.prefix, config=locker.config, clock=locker.clock
            )
            counter = _COUNTERS.get(locker)
            if counter is not None:
                counter.attach_async(twin)
        else:
            raise TypeError(f"no async twin for {locker!r}")
        self._twins[id(locker)] = twin
        return twin

    def lock(self, name: str, locker: Any) -> Any:
        if self.runner is None:
            return Lock(name, locker)
        return SyncFacade(AsyncLock(name, self.twin(locker)), self.runner)

    def semaphore(self, name: str, locker: Any, limit: Any) -> Any:
        if self.runner is None:
            return Semaphore(name, locker, limit)
        return SyncFacade(AsyncSemaphore(name, self.twin(locker), limit), self.runner)

    def close(self) -> None:
        for twin in self._twins.values():
            if (
                isinstance(twin, (AsyncConfigMapLocker, AsyncLeaseLocker))
                and self.runner is not None
            ):
                self.runner.run(twin.aclose())


MakeLocker = Callable[..., Any]
ConfigMapLockers = Callable[..., ConfigMapLocker]
NewLock = Callable[..., Any]
