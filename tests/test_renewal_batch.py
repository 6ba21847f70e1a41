"""Renewals due together are written together, on the real API server.

The renewer hands a lock's tick the locks of the same locker due shortly
after it (``_schedule.DueQueue.pop_batch``); ``tick_all`` then sends their
renewals in one pipelined exchange. Each lock's renewal still means what it
meant alone: a lock whose object was deleted is declared lost, one whose
object changed meanwhile reads it and renews again, and the others are
renewed by the one exchange.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lockheed import (
    AsyncConfigMapLocker,
    AsyncLeaseLocker,
    AsyncLock,
    ConfigMapLocker,
    LeaseLocker,
    Lock,
    LockLost,
)
from lockheed._async.lock import tick_all as async_tick_all
from lockheed._sync.lock import tick_all
from support import LoopThread

pytestmark = pytest.mark.lockheed_kube

KINDS = {
    "configmap": (ConfigMapLocker, AsyncConfigMapLocker),
    "lease": (LeaseLocker, AsyncLeaseLocker),
}


class Side:
    """Locks of the sync or the asyncio API on one locker of one kind, a sync
    locker of that kind on the same namespace for the test's own requests,
    and the sizes of the locker's pipelined exchanges."""

    def __init__(
        self, flavour: str, kind: str, namespace: str, kubeconfig: Path, runner: LoopThread
    ):
        sync_kind, async_kind = KINDS[kind]
        self.flavour, self.runner = flavour, runner
        self.raw = sync_kind(namespace, config=kubeconfig)
        self.batches: list[int] = []
        if flavour == "sync":
            self.locker: Any = sync_kind(namespace, config=kubeconfig)
        else:
            self.locker = runner.run(self._async_locker(async_kind, namespace, kubeconfig))
        lean = self.locker.api.lean
        assert lean is not None  # a client certificate: the lean client serves it
        send = lean.request_batch
        if flavour == "sync":

            def spy(calls: list[Any], timeout: float) -> Any:
                self.batches.append(len(calls))
                return send(calls, timeout)

        else:

            async def spy(calls: list[Any], timeout: float) -> Any:  # type: ignore[misc]
                self.batches.append(len(calls))
                return await send(calls, timeout)

        lean.request_batch = spy

    @staticmethod
    async def _async_locker(kind: Any, namespace: str, kubeconfig: Path) -> Any:
        return kind(namespace, config=kubeconfig)  # made on the loop that uses it

    def locks(self, prefix: str, n: int) -> list[Any]:
        made = []
        for i in range(n):
            kind = Lock if self.flavour == "sync" else AsyncLock
            lock = kind(f"{prefix}-{i}", self.locker).with_duration(30).with_renew_interval(25)
            self.call(lock.acquire, timeout=30)
            made.append(lock)
        return made

    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.flavour == "sync":
            return method(*args, **kwargs)
        return self.runner.run(method(*args, **kwargs))

    def tick_all(self, locks: list[Any]) -> list[float | None]:
        if self.flavour == "sync":
            return tick_all(locks)
        return self.runner.run(async_tick_all(locks))

    def stored(self, name: str) -> Any:
        status, obj = self.raw.api.request("GET", "/" + self.raw.object_name(name))
        assert status == 200
        return obj

    def close(self) -> None:
        self.raw.close()
        if self.flavour == "sync":
            self.locker.close()
        else:
            self.runner.run(self.locker.aclose())


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=list(KINDS))
def side(
    request: pytest.FixtureRequest,
    flavour: str,
    lockheed_namespace: str,
    lockheed_kubeconfig: Path,
    loop_thread: LoopThread,
) -> Iterator[Side]:
    made = Side(flavour, request.param, lockheed_namespace, lockheed_kubeconfig, loop_thread)
    yield made
    made.close()


def test_due_renewals_go_out_in_one_pipelined_exchange(side: Side) -> None:
    locks = side.locks("together", 6)
    # a renewal's written expiry may come out earlier than the last (the bounds
    # on the server's clock narrow), so a renewal is told by when it was sent
    before = [(lock.fencing_token, lock._sent, lock._record.version) for lock in locks]
    dues = side.tick_all(locks)
    assert side.batches == [6]
    for lock, due, (token, sent, version) in zip(locks, dues, before, strict=True):
        assert lock.held and lock.lost is None
        assert due is not None  # renewed: next due one interval on
        assert lock.fencing_token == token  # a renewal keeps the token
        assert lock._sent > sent
        stored = side.stored(lock.name)["metadata"]["resourceVersion"]
        assert stored == lock._record.version != version  # the server has our renewal
    for lock in locks:
        side.call(lock.release)


def test_each_renewal_of_a_batch_decides_for_its_own_lock(side: Side) -> None:
    deleted, changed, *rest = locks = side.locks("apart", 4)
    lost: list[LockLost] = []
    deleted.on_lost(lost.append)
    side.raw.api.request("DELETE", "/" + side.raw.object_name(deleted.name))
    obj = side.stored(changed.name)
    obj["metadata"].setdefault("annotations", {})["example.com/touched"] = "yes"
    side.raw.api.request("PUT", "/" + side.raw.object_name(changed.name), body=obj)
    sent = [lock._sent for lock in locks]

    dues = side.tick_all(locks)

    assert side.batches == [4]  # every first write in one exchange
    assert dues[0] is None and not deleted.held  # its object was deleted: lost
    assert len(lost) == 1 and "deleted" in str(lost[0])
    for lock, due, old in zip(locks[1:], dues[1:], sent[1:], strict=True):
        assert due is not None and lock.held and lock._sent > old
        assert side.stored(lock.name)["metadata"]["resourceVersion"] == lock._record.version
    # the changed one conflicted, read the new version and renewed on it,
    # keeping what the other writer added
    stored = side.stored(changed.name)["metadata"]
    assert stored["resourceVersion"] == changed._record.version
    assert stored["annotations"]["example.com/touched"] == "yes"
    with pytest.raises(LockLost):
        side.call(deleted.release)
    for lock in [changed, *rest]:
        side.call(lock.release)
