"""Conflict storms: many writers on one lock object.

Every write is conditional on the resourceVersion read, so concurrent writers
meet 409s; the library re-reads and decides again. Holds must exclude each
other with increasing tokens, and a holder whose renewals keep meeting other
writers' changes keeps its lock and their changes.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from fault_support import Traffic, record
from lockheed import ConfigMapLocker, Lock, LockTimeout
from lockheed.testing import Cluster
from support import ConfigMapLockers

WRITERS = 12
ROUNDS = 5
FOREIGN_WRITES = 20


def test_many_writers_exclude_each_other(
    configmap_locker: ConfigMapLockers, request: pytest.FixtureRequest
) -> None:
    lockers = [configmap_locker() for _ in range(WRITERS)]
    traffic = [Traffic(locker) for locker in lockers]
    start = threading.Barrier(WRITERS)
    holds: list[tuple[int, float, float]] = []
    errors: list[BaseException] = []
    counter = [0]  # incremented with a window for a lost update unless holds exclude

    def contend(locker: ConfigMapLocker) -> None:
        lock = Lock("storm", locker).with_duration(30)
        try:
            start.wait(30)
            for _ in range(ROUNDS):
                token = lock.acquire(timeout=120)
                began = time.monotonic()
                value = counter[0]
                time.sleep(0.002)  # the work under the lock: another holder would interleave
                counter[0] = value + 1
                ended = time.monotonic()
                lock.release()
                holds.append((token, began, ended))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=contend, args=(locker,)) for locker in lockers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []

    conflicts = sum(t.statuses[409] for t in traffic)
    record(request, "conflicts", conflicts)
    assert len(holds) == counter[0] == WRITERS * ROUNDS
    ordered = sorted(holds, key=lambda hold: hold[1])
    for (token, _, end), (next_token, next_start, _) in itertools.pairwise(ordered):
        assert end < next_start, "two holds overlap"
        assert token < next_token, "tokens did not increase"


def test_foreign_writes_make_renewals_conflict_but_never_cost_the_lock(
    lockheed_cluster: Cluster, lockheed_namespace: str, configmap_locker: ConfigMapLockers
) -> None:
    """Another tool annotates the lock object before every renewal: each renewal
    meets a 409, reads, and renews; the other tool's annotation survives."""
    locker = configmap_locker()
    traffic = Traffic(locker)
    lock = Lock("annotated", locker).with_duration(30)
    token = lock.acquire(timeout=30)
    path = f"/api/v1/namespaces/{lockheed_namespace}/configmaps/lockheed-annotated"
    with lockheed_cluster.http_client() as admin:
        for i in range(FOREIGN_WRITES):
            patched = admin.patch(
                path,
                json={"metadata": {"annotations": {"example.com/seen": str(i)}}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
            assert patched.status_code == 200, patched.text
            lock.renew()
            assert lock.held and lock.lost is None

    assert traffic.statuses[409] == FOREIGN_WRITES
    assert lock.fencing_token == token
    with pytest.raises(LockTimeout):
        Lock("annotated", configmap_locker()).acquire(blocking=False)
    lock.release()
    with lockheed_cluster.http_client() as admin:
        annotations = admin.get(path).json()["metadata"]["annotations"]
    assert annotations["example.com/seen"] == str(FOREIGN_WRITES - 1)
