"""Shared (readers-writer) locks and semaphores, sync and asyncio, on ConfigMaps on
the real control plane and on the Memory locker held to the same semantics."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lockheed import (
    Condition,
    ConfigMapLocker,
    LeaseLocker,
    Lock,
    LockLost,
    LockTimeout,
    LockTypeError,
    MemoryLocker,
    Semaphore,
    acquired,
    holders,
    list_locks,
    lock_type,
)
from lockheed._core import UNCHANGED, Read, Watch
from lockheed._queue import read_queue
from lockheed._shared_core import EXCLUSIVE_KEY, LIMIT_KEY, read_tokens
from lockheed._state import Record, encode_state
from support import Api, Requests, lockheed_argv

WAIT = 60.0


@pytest.fixture(params=["memory", pytest.param("configmap", marks=pytest.mark.lockheed_kube)])
def locker(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryLocker()
        return
    namespace: str = request.getfixturevalue("lockheed_namespace")
    kubeconfig: Path = request.getfixturevalue("lockheed_kubeconfig")
    made = ConfigMapLocker(namespace, config=kubeconfig)
    yield made
    made.close()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(8) as executor:
        yield executor


def read(locker: Any, name: str) -> Record | None:
    result: Record | None = locker.execute(Read(name))
    return result


def follow(locker: Any, name: str, predicate: Callable[[Record | None], bool]) -> Record:
    """Follow the object version by version (one watch) until ``predicate`` holds."""
    session = object()
    deadline = locker.clock.monotonic() + WAIT
    record = read(locker, name)
    try:
        while not predicate(record):
            assert locker.clock.monotonic() < deadline, f"lock {name!r} never got there"
            version = None if record is None else record.version
            found = locker.execute(Watch(name, version, deadline, session))
            if found is not UNCHANGED:
                record = found
    finally:
        end = getattr(locker, "end_watch", None)
        if end is not None:
            end(session)
    assert record is not None
    return record


def in_line(*ids: str) -> Callable[[Record | None], bool]:
    def check(record: Record | None) -> bool:
        line = [] if record is None else [w.instance_id for w in read_queue(record.meta)]
        return all(i in line for i in ids)

    return check


def stored(locker: Any, name: str) -> tuple[str | None, dict[str, str]]:
    """The object's lock document and lockheed's annotations, to compare before/after."""
    record = read(locker, name)
    assert (record is not None and record.raw is not None) or isinstance(locker, MemoryLocker)
    if isinstance(locker, MemoryLocker):
        raw = locker.raw(name)
        assert raw is not None
        return raw
    assert record is not None
    body = record.raw
    meta = {k: v for k, v in body["metadata"].get("annotations", {}).items()}
    return body.get("data", {}).get("lock"), meta


def shared(api: Api, name: str, locker: Any, exclusive: bool = False) -> Any:
    lock = api.lock(name, locker).with_duration(30)
    return lock.with_exclusive() if exclusive else lock.with_shared()


# ---------------------------------------------------------------- readers-writer


def test_readers_share_a_writer_waits_for_all_of_them_and_later_readers_wait_for_it(
    api: Api, locker: Any, pool: ThreadPoolExecutor
) -> None:
    name = f"rw-{api.name}"
    r1, r2, r3 = (shared(api, name, locker) for _ in range(3))
    writer = shared(api, name, locker, exclusive=True)
    t1, t2 = r1.acquire(timeout=WAIT), r2.acquire(timeout=WAIT)
    assert r1.held and r2.held
    with pytest.raises(LockTimeout):
        writer.acquire(timeout=0)
    wrote: Future[int] = pool.submit(writer.acquire, True, WAIT)
    follow(locker, name, in_line(writer.instance_id))
    # Writer preference: a reader arriving while the writer waits lines up behind it.
    read3: Future[int] = pool.submit(r3.acquire, True, WAIT)
    follow(locker, name, in_line(writer.instance_id, r3.instance_id))
    r1.release()
    assert not wrote.done() and not read3.done() and r2.held  # r2 still reads
    r2.release()
    tw = wrote.result(WAIT)
    assert writer.held and tw > max(t1, t2)
    assert not read3.done()
    record = read(locker, name)
    assert record is not None and record.state is not None
    assert list(record.state.leases) == [writer.instance_id]
    assert record.meta.get(EXCLUSIVE_KEY) == writer.instance_id
    writer.release()
    t3 = read3.result(WAIT)
    assert r3.held and t3 > tw
    r3.release()


def test_a_release_hands_the_writer_the_lock_in_its_own_write(
    api: Api, locker: Any, pool: ThreadPoolExecutor
) -> None:
    name = f"rw-handoff-{api.name}"
    reader = shared(api, name, locker)
    writer = shared(api, name, locker, exclusive=True)
    reader.acquire(timeout=WAIT)
    wrote: Future[int] = pool.submit(writer.acquire, True, WAIT)
    follow(locker, name, in_line(writer.instance_id))
    before = read(locker, name)
    assert before is not None
    reader.release()
    token = wrote.result(WAIT)
    after = read(locker, name)
    assert after is not None and after.state is not None
    # One write after the join: the release itself gave the writer its lease.
    assert int(after.version) > int(before.version)
    assert read_tokens(after.meta) == {writer.instance_id: token}
    assert writer.instance_id in after.state.leases
    writer.release()


def test_each_holder_has_its_own_loss_notice(api: Api, locker: Any) -> None:
    name = f"rw-loss-{api.name}"
    a, b = shared(api, name, locker), shared(api, name, locker)
    lost: list[LockLost] = []
    a.on_lost(lost.append)
    a.acquire(timeout=WAIT)
    b.acquire(timeout=WAIT)
    # Another program removes a's lease (b's stays).
    record = read(locker, name)
    assert record is not None and record.state is not None
    state = record.state.with_leases([record.state.leases[b.instance_id]])
    if isinstance(locker, MemoryLocker):
        raw = locker.raw(name)
        assert raw is not None
        locker.put_raw(name, encode_state(state), raw[1])
    else:
        body = record.raw
        body["data"]["lock"] = encode_state(state)
        status, _ = locker.api.request("PUT", "/" + locker.object_name(name), body=body)
        assert status == 200
    with pytest.raises(LockLost):
        a.renew()
    assert not a.held and len(lost) == 1
    b.renew()
    assert b.held
    with pytest.raises(LockLost):
        a.release()
    b.release()


# ---------------------------------------------------------------- semaphores


def test_a_semaphore_admits_its_limit_and_a_release_admits_one_waiter(
    api: Api, locker: Any, pool: ThreadPoolExecutor
) -> None:
    name = f"sem-{api.name}"
    sems = [api.semaphore(name, locker, 3).with_duration(30) for _ in range(5)]
    tokens = [s.acquire(timeout=WAIT) for s in sems[:3]]
    assert all(s.held for s in sems[:3])
    with pytest.raises(LockTimeout) as timed_out:
        sems[3].acquire(timeout=0)
    assert timed_out.value.holder in {s.instance_id for s in sems[:3]}
    fourth: Future[int] = pool.submit(sems[3].acquire, True, WAIT)
    follow(locker, name, in_line(sems[3].instance_id))
    fifth: Future[int] = pool.submit(sems[4].acquire, True, WAIT)
    follow(locker, name, in_line(sems[3].instance_id, sems[4].instance_id))
    sems[0].release()
    assert fourth.result(WAIT) > max(tokens)
    record = follow(locker, name, lambda r: r is not None and r.state is not None)
    assert record.state is not None and len(record.state.leases) == 3
    assert not fifth.done()  # full again: only one was admitted
    sems[1].release()
    assert fifth.result(WAIT) > 0
    infos = [i for i in list_locks(locker) if i.name == name]
    assert len(infos) == 1
    info = infos[0]
    assert info.lock_type == "semaphore" and info.limit == 3 and len(info.holders) == 3
    assert {h.instance_id for h in info.holders} == {s.instance_id for s in sems[2:]}
    assert all(h.token is not None for h in info.holders)
    assert [i.name for i in list_locks(locker, holders(3) & lock_type("semaphore"))] == [name]
    assert name not in [i.name for i in list_locks(locker, holders(2))]
    for s in sems[2:]:
        s.release()
    assert [i.name for i in list_locks(locker, acquired(True)) if i.name == name] == []


@pytest.mark.lockheed_kube
def test_a_release_that_admits_a_waiter_is_one_request(
    api: Api, lockheed_namespace: str, lockheed_kubeconfig: Path, pool: ThreadPoolExecutor
) -> None:
    locker = ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig)
    counts = Requests(locker)
    try:
        name = f"sem-cost-{api.name}"
        a, b = (api.semaphore(name, locker, 1).with_duration(30) for _ in range(2))
        a.acquire(timeout=WAIT)
        waiting: Future[int] = pool.submit(b.acquire, True, WAIT)
        follow(locker, name, in_line(b.instance_id))
        a.renew()  # a holder's copy is current after its renewal (or its wait's watch)
        before = counts.snapshot()
        a.release()
        waiting.result(WAIT)
        spent = counts.since(before)
        # a: the one write that also admits b; b: nothing but its open watch.
        assert spent["update"] == 1 and spent["get"] == 0, spent
        b.release()
    finally:
        locker.close()


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("limit", [0, -1, True, 2.5, "3", None])
def test_a_limit_that_is_not_a_positive_integer_is_refused(api: Api, limit: Any) -> None:
    with pytest.raises(ValueError, match="limit"):
        api.semaphore("bad", MemoryLocker(), limit)


def test_mixing_kinds_or_limits_under_one_name_is_refused_and_changes_nothing(
    api: Api, locker: Any
) -> None:
    sem, mutex, rw = f"k-sem-{api.name}", f"k-mutex-{api.name}", f"k-rw-{api.name}"
    holder = api.semaphore(sem, locker, 2).with_duration(30)
    holder.acquire(timeout=WAIT)
    plain = api.lock(mutex, locker).with_duration(30)
    plain.acquire(timeout=WAIT)
    reader = shared(api, rw, locker)
    reader.acquire(timeout=WAIT)
    attempts = [
        (api.semaphore(sem, locker, 3), sem, "limit 2, not 3"),
        (api.lock(sem, locker), sem, "'semaphore' lock, not a mutex"),
        (shared(api, sem, locker), sem, "is a 'semaphore' lock"),
        (shared(api, mutex, locker), mutex, "is a 'mutex' lock"),
        (shared(api, mutex, locker, exclusive=True), mutex, "is a 'mutex' lock"),
        (api.semaphore(mutex, locker, 2), mutex, "is a 'mutex' lock"),
        (api.lock(rw, locker), rw, "'shared' lock, not a mutex"),
        (api.semaphore(rw, locker, 2), rw, "is a 'shared' lock"),
    ]
    for lock, name, message in attempts:
        before = stored(locker, name)
        with pytest.raises(LockTypeError, match=message):
            lock.acquire(timeout=1)
        assert stored(locker, name) == before, f"{name} changed by a refused acquire"
        assert not lock.held
    assert holder.held and plain.held and reader.held
    for lock in (holder, plain, reader):
        lock.release()


@pytest.mark.lockheed_kube
def test_a_lease_locker_refuses_shared_modes(
    api: Api, lockheed_namespace: str, lockheed_kubeconfig: Path
) -> None:
    locker = LeaseLocker(lockheed_namespace, config=lockheed_kubeconfig)
    try:
        with pytest.raises(ValueError, match="Lease holds one holder"):
            api.lock("lease-rw", locker).with_shared()
        with pytest.raises(ValueError, match="Lease holds one holder"):
            api.semaphore("lease-sem", locker, 2)
    finally:
        locker.close()


def test_a_semaphore_has_no_mode_and_modes_are_checked() -> None:
    locker = MemoryLocker()
    with pytest.raises(ValueError, match="no mode"):
        Semaphore("s", locker, 2).with_shared()
    with pytest.raises(ValueError, match="mode must be one of"):
        Lock("m", locker).with_mode("reader")
    assert Lock("m", locker).with_exclusive().mode == "exclusive"
    assert Semaphore("s", locker, 2).mode == "semaphore"


def test_a_forced_acquire_converts_a_lock_of_another_kind(api: Api, locker: Any) -> None:
    name = f"force-{api.name}"
    plain = api.lock(name, locker).with_duration(30)
    plain.acquire(timeout=WAIT)
    sem = api.semaphore(name, locker, 2).with_duration(30).with_force(acquired(True))
    token = sem.acquire(timeout=WAIT)
    record = read(locker, name)
    assert record is not None and record.state is not None
    assert record.state.lock_type == "semaphore" and record.meta[LIMIT_KEY] == "2"
    assert list(record.state.leases) == [sem.instance_id] and token > 0
    with pytest.raises(LockLost):
        plain.renew()
    sem.release()


def test_threads_never_see_a_writer_beside_anyone(locker: Any, pool: ThreadPoolExecutor) -> None:
    """Sync holders in threads of one process: the holders' own bookkeeping agrees."""
    name = "rw-threads"
    inside: list[str] = []
    guard = threading.Lock()
    bad: list[str] = []

    def work(i: int) -> None:
        lock = Lock(name, locker).with_duration(30)
        lock = lock.with_exclusive() if i % 3 == 0 else lock.with_shared()
        for _ in range(4):
            lock.acquire(timeout=WAIT)
            with guard:
                inside.append(lock.mode)
                if (lock.mode == "exclusive" and len(inside) > 1) or "exclusive" in inside[:-1]:
                    bad.append(str(inside))
            with guard:
                inside.remove(lock.mode)
            lock.release()

    for done in [pool.submit(work, i) for i in range(6)]:
        done.result(WAIT * 2)
    assert not bad


# ---------------------------------------------------------------- the command line


@pytest.mark.lockheed_kube
def test_lockheed_run_shared_and_limit_and_list_shows_type_and_holders(
    lockheed_namespace: str, lockheed_kubeconfig: Path
) -> None:
    locker = ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig)
    cluster = ["--kubeconfig", str(lockheed_kubeconfig), "--namespace", lockheed_namespace]

    def lockheed(*args: str) -> subprocess.CompletedProcess[str]:
        argv = lockheed_argv(*args)
        return subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, check=False)

    def run(name: str, *options: str) -> subprocess.CompletedProcess[str]:
        token = "import os; print(os.environ['LOCKHEED_FENCING_TOKEN'])"
        return lockheed("run", name, *cluster, *options, "--", sys.executable, "-c", token)

    try:
        # The holders renew: on a busy machine the commands below take longer than a lease.
        first = Semaphore("cli-sem", locker, 2).with_duration(30).with_renew_interval(5)
        first.acquire(timeout=WAIT)
        beside = run("cli-sem", "--limit", "2")  # one place left: runs beside `first`
        assert beside.returncode == 0, beside.stderr
        assert int(beside.stdout) > (first.fencing_token or 0)
        second = Semaphore("cli-sem", locker, 2).with_duration(30).with_renew_interval(5)
        second.acquire(timeout=WAIT)
        full = run("cli-sem", "--limit", "2", "--timeout", "0")
        assert full.returncode == 73, full.stderr
        for options, message in [
            (("--limit", "3"), "limit 2, not 3"),
            (("--shared",), "is a 'semaphore' lock"),
            ((), "'semaphore' lock, not a mutex"),
        ]:
            refused = run("cli-sem", *options)
            assert refused.returncode == 1, refused.stderr
            (line,) = refused.stderr.splitlines()
            assert line.startswith("lockheed: ") and message in line
        bad = run("cli-sem", "--limit", "0")
        assert bad.returncode == 2 and "invalid limit" in bad.stderr
        reader = Lock("cli-rw", locker).with_duration(30).with_renew_interval(5).with_shared()
        reader.acquire(timeout=WAIT)
        assert run("cli-rw", "--shared").returncode == 0
        assert run("cli-rw", "--exclusive", "--timeout", "0").returncode == 73
        listed = lockheed("list", *cluster)
        assert listed.returncode == 0, listed.stderr
        header, *rows = listed.stdout.splitlines()
        at = header.index("TYPE"), header.index("HOLDERS")
        kinds = {row.split()[0]: row[at[0] : at[1]].strip() for row in rows}
        assert kinds["cli-sem"] == "semaphore 2/2"
        assert kinds["cli-rw"] == "shared 1"
        as_json = {i["name"]: i for i in json.loads(lockheed("list", *cluster, "--json").stdout)}
        assert as_json["cli-sem"]["type"] == "semaphore" and as_json["cli-sem"]["limit"] == 2
        assert {h["instanceID"] for h in as_json["cli-sem"]["holders"]} == {
            first.instance_id,
            second.instance_id,
        }
        for lock in (first, second, reader):
            lock.release()
    finally:
        locker.close()


def test_conditions_on_holders_and_type_in_go_vocabulary() -> None:
    both = Condition.from_dict(
        {
            "operation": "and",
            "conditions": [
                {"operation": "equals", "field": "holders", "value": 2},
                {"operation": "equals", "field": "lockType", "value": "semaphore"},
            ],
        }
    )
    assert both == holders(2) & lock_type("semaphore")
    assert Condition.from_dict(both.to_dict()) == both
    for bad in ({"field": "holders", "value": -1}, {"field": "holders", "value": True}):
        with pytest.raises(ValueError, match="holders"):
            Condition.from_dict({"operation": "equals", **bad})
    with pytest.raises(ValueError, match="lockType"):
        Condition.from_dict({"operation": "equals", "field": "lockType", "value": 3})
    locker = MemoryLocker()
    sems = [Semaphore("two", locker, 3).with_duration(30) for _ in range(2)]
    for sem in sems:
        sem.acquire(timeout=1)
    plain = Lock("one", locker).with_duration(30)
    plain.acquire(timeout=1)
    assert [i.name for i in list_locks(locker, both)] == ["two"]
    assert [i.name for i in list_locks(locker, holders(1))] == ["one"]  # a mutex counts too
    assert [i.name for i in list_locks(locker, lock_type("mutex"))] == ["one"]
    with pytest.raises(ValueError, match="changing its mode"):
        plain.with_shared()


def test_a_racing_shared_contender_enters_beside_readers_and_never_joins() -> None:
    locker = MemoryLocker()
    reader = Lock("race", locker).with_duration(30).with_shared()
    reader.acquire(timeout=1)
    writer = Lock("race", locker).with_duration(30).with_exclusive()
    waiting = threading.Thread(target=writer.acquire, kwargs={"timeout": WAIT})
    waiting.start()
    follow(locker, "race", in_line(writer.instance_id))
    # Fair: a reader lines up behind the waiting writer. Racing: it enters at once.
    with pytest.raises(LockTimeout):
        Lock("race", locker).with_duration(30).with_shared().acquire(timeout=0)
    racer = Lock("race", locker).with_duration(30).with_shared().with_fair(False)
    racer.acquire(timeout=0)
    record = read(locker, "race")
    assert record is not None and racer.instance_id not in str(record.meta.get("lockheed/queue"))
    reader.release()
    racer.release()
    waiting.join(WAIT)
    assert writer.held
    writer.release()
