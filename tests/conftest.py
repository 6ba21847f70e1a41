"""Fixtures shared by the lock tests: every locker, with request counting.

``locker`` is parametrized over the Memory locker, and the ConfigMap and Lease
lockers on the real control plane (the ``lockheed_*`` fixtures of lockheed's
pytest plugin, which is opt-in: enabled here), so each behaviour is proven
against Kubernetes, on both kinds of object, and held to the same semantics in
memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lockheed import ConfigMapLocker, LeaseLocker, MemoryLocker
from lockheed._clock import ServerClock
from support import Api, ConfigMapLockers, LoopThread, MakeLocker, NewLock, Requests

pytest_plugins = ["lockheed.testing.plugin"]

LOCKERS = [
    "memory",
    pytest.param("configmap", marks=pytest.mark.lockheed_kube),
    pytest.param("lease", marks=pytest.mark.lockheed_kube),
]


@pytest.fixture(params=LOCKERS)
def make_locker(request: pytest.FixtureRequest) -> Iterator[MakeLocker]:
    """A factory of lockers sharing one store: the same namespace, or one memory store."""
    made: list[Any] = []
    if request.param == "memory":
        store = MemoryLocker()

        def make(clock: ServerClock | None = None) -> Any:
            return store

    else:
        namespace: str = request.getfixturevalue("lockheed_namespace")
        kubeconfig: Path = request.getfixturevalue("lockheed_kubeconfig")
        kind = LeaseLocker if request.param == "lease" else ConfigMapLocker

        def make(clock: ServerClock | None = None) -> Any:
            locker = kind(namespace, config=kubeconfig, clock=clock)
            made.append(locker)
            return locker

    yield make
    for locker in made:
        locker.close()


@pytest.fixture
def locker(make_locker: MakeLocker) -> Any:
    return make_locker()


@pytest.fixture
def requests(locker: Any) -> Requests:
    return Requests(locker)


@pytest.fixture
def configmap_locker(
    lockheed_namespace: str, lockheed_kubeconfig: Path
) -> Iterator[ConfigMapLockers]:
    """A factory of ConfigMap lockers on the test namespace, closed after the test."""
    made: list[ConfigMapLocker] = []

    def make(config: Any = None, clock: ServerClock | None = None) -> ConfigMapLocker:
        locker = ConfigMapLocker(
            lockheed_namespace, config=config or lockheed_kubeconfig, clock=clock
        )
        made.append(locker)
        return locker

    yield make
    for locker in made:
        locker.close()


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    runner = LoopThread()
    yield runner
    runner.close()


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    """The sync API, or the asyncio API (on a debug-mode loop) driven by the same tests.

    An asyncio test fails if anything made a blocking call on the loop's thread
    (see tests/blocking_calls.py); a callback that was merely slow does not
    fail it."""
    if request.param == "sync":
        yield Api("sync", None)
        return
    runner: LoopThread = request.getfixturevalue("loop_thread")
    del runner.blocking[:]
    made = Api("async", runner)
    yield made
    made.close()
    assert not runner.blocking, f"a blocking call on the event loop: {runner.blocking}"


@pytest.fixture
def new_lock(api: Api, locker: Any) -> NewLock:
    """``new_lock(name, locker=None)``: a lock of the API under test, on ``locker``'s store."""

    def make(name: str, on: Any = None) -> Any:
        return api.lock(name, locker if on is None else on)

    return make
