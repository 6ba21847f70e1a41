"""Fair waiting on the real control plane: the line in ``lockheed/queue``.

Every join and every hand-off is observed on the lock's object itself, through
a watch that sees each version in turn (:class:`LineWatch`), so nothing here
sleeps to synchronise. Requests are counted on the wire (``Requests``), per
lock instance (each has its own locker).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from line_watch import LineWatch, holders_of, line_of
from lockheed import (
    AsyncConfigMapLocker,
    AsyncLock,
    Event,
    EventCode,
    Lock,
    LockError,
    LockTimeout,
    _observe,
)
from lockheed._core import (
    CLAIM_WINDOW,
    TOKEN_HOLDER_KEY,
    TOKEN_KEY,
    Create,
    Intent,
    Read,
    Replace,
    Watch,
    Write,
    decide_acquire,
    decide_release,
)
from lockheed._queue import view_label
from lockheed._state import LockState, Record
from support import Api, ConfigMapLockers, LoopThread, Requests, SyncFacade, lockheed_argv

pytestmark = pytest.mark.lockheed_kube

WAIT = 60.0  # any wait here; only reached when something is broken
WAITERS = 4
# A dead holder's lease, and what a busy host and the server clock's second add
# to the bound of dead waiters (well below a lease: a line that stalled for a
# lease more fails).
DEAD_LEASE = 20.0
DEAD_SLACK = 10.0


@pytest.fixture
def watch_line(configmap_locker: ConfigMapLockers) -> Iterator[Callable[[str], LineWatch]]:
    made: list[LineWatch] = []

    def start(name: str) -> LineWatch:
        made.append(LineWatch(configmap_locker(), name))
        return made[-1]

    yield start
    for watch in made:
        watch.close()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=WAITERS + 2, thread_name_prefix="waiter")
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def acquire_counting(
    lock: Any, requests: Requests, timeout: float | None = WAIT
) -> tuple[int, Any]:
    """Acquire, and count this instance's requests the moment ``acquire`` returns
    (before its renewal, which the short lease of a hand-off calls for soon)."""
    if isinstance(lock, SyncFacade):
        inner: AsyncLock = lock._lock
        runner: LoopThread = lock._runner

        async def go() -> tuple[int, Any]:
            token = await inner.acquire(timeout=timeout)
            return token, requests.snapshot()  # no other task ran in between

        return runner.run(go(), timeout=None)
    token = lock.acquire(timeout=timeout)
    return token, requests.snapshot()


def writes(counts: Any) -> int:
    return int(counts["update"] + counts["create"])


# ---------------------------------------------------------------- order


def test_waiters_get_the_lock_in_the_order_they_joined(
    api: Api,
    configmap_locker: ConfigMapLockers,
    watch_line: Callable[[str], LineWatch],
    pool: ThreadPoolExecutor,
) -> None:
    """N waiters that joined one after another (each join seen in the object)
    get the lock in that order; each release hands the lock over in its one
    write, and the waiter that receives it sends no write to take it."""
    holder_locker = configmap_locker()
    holder_requests = Requests(holder_locker)
    holder = api.lock("line", holder_locker).with_duration(60)
    holder.acquire()
    line = watch_line("line")

    renewals: Counter[str] = Counter()  # renewals sent, by instance ID

    def count_renewals(event: Event) -> None:
        if event.code in (EventCode.RENEW_OK, EventCode.RENEW_FAILED):
            renewals[event.instance_id] += 1

    waiters: list[tuple[Any, Requests, Future[tuple[int, Any]]]] = []
    for i in range(WAITERS):
        locker = configmap_locker()
        requests = Requests(locker)
        lock = (
            api.lock("line", locker)
            .with_duration(30)
            .with_renew_interval(10)
            .with_event_handler(count_renewals)
        )
        waiters.append((lock, requests, pool.submit(acquire_counting, lock, requests)))
        line.until(functools.partial(lambda n, r: len(line_of(r)) == n, i + 1))
    ids = [lock.instance_id for lock, _, _ in waiters]
    assert line_of(line.record) == ids  # the join order, as stored
    joined = line.record
    assert joined is not None and holders_of(joined) == [holder.instance_id]
    for _, requests, _ in waiters:  # each joined with one write and waits on one watch
        assert writes(requests.snapshot()) == 1, requests.snapshot()

    # The holder's copy of the object predates the joins; a renewal brings it up to
    # date (otherwise its release meets a conflict first: 409, GET, then the write).
    holder.renew()
    before = holder_requests.snapshot()
    holder.release()
    assert holder_requests.since(before) == {"update": 1}  # the hand-off is the release

    order = []
    tokens = []
    for i, (lock, requests, future) in enumerate(waiters):
        token, counts = future.result(WAIT)
        order.append(lock.instance_id)
        tokens.append(token)
        # Only this waiter holds it: the ones behind it are still waiting.
        assert not any(f.done() for _, _, f in waiters[i + 1 :])
        assert writes(counts) == 1, f"a write to take a handed lock: {counts}"
        assert lock.held
        # The release is one write (plus the renewal that makes the handed lease
        # full, should it come first on a slow host).
        before, renewed = requests.snapshot(), renewals[lock.instance_id]
        lock.release()
        sent = requests.since(before)
        assert sent == {"update": 1 + renewals[lock.instance_id] - renewed}, sent
    assert order == ids
    assert tokens == sorted(tokens) and len(set(tokens)) == WAITERS

    final = line.until(lambda r: not holders_of(r) and not line_of(r))
    assert final.state is not None and not final.state.leases
    # Every version from the join of the last waiter on: the lock passed from one
    # holder to the next in single writes, and was never free while a waiter was
    # in line.
    seen = line.history[line.history.index(joined) :]
    holders = [holders_of(r) for r in seen]
    lines = [line_of(r) for r in seen]
    assert all(holders[:-1]), f"free with waiters in line: {list(zip(holders, lines, strict=True))}"
    changes = [h for a, h in itertools.pairwise([[], *holders]) if h != a]
    assert changes == [[holder.instance_id], *([i] for i in ids), []]
    for record in seen:  # a holder is never in line as well
        assert not set(holders_of(record)) & set(line_of(record))


def record_watches(locker: Any) -> list[tuple[str, Any]]:
    """Record every event the API server sends ``locker``'s watches, in order."""
    received: list[tuple[str, Any]] = []
    watch = locker.api.watch

    def recording(*args: Any, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        events = watch(*args, **kwargs)
        try:
            for item in events:
                received.append(item)
                yield item
        finally:
            events.close()

    locker.api.watch = recording
    return received


def test_a_waiter_far_back_is_sent_only_the_versions_that_concern_it(
    configmap_locker: ConfigMapLockers,
    watch_line: Callable[[str], LineWatch],
    pool: ThreadPoolExecutor,
) -> None:
    """A fair waiter watches by its view label (``lockheed/w.<instance ID>``,
    which every write gives the holders and the first two in line), so the API
    server sends a waiter far back none of the hand-offs and renewals ahead of
    it: its watch receives only versions that carry its label, not the first
    hand-off (when it is third), and then the one that hands it the lock."""
    holder = Lock("far", configmap_locker()).with_duration(60)
    holder.acquire()
    line = watch_line("far")
    ahead: list[tuple[Lock, Future[int]]] = []
    for i in range(3):
        lock = Lock("far", configmap_locker()).with_duration(30).with_renew_interval(10)
        ahead.append((lock, pool.submit(lock.acquire, timeout=WAIT)))
        line.until(functools.partial(lambda n, r: len(line_of(r)) == n, i + 1))

    locker = configmap_locker()
    received = record_watches(locker)  # what the API server sent its watches
    far = Lock("far", locker).with_duration(30).with_renew_interval(10)
    label = view_label(far.instance_id)
    waiting = pool.submit(far.acquire, timeout=WAIT)
    line.until(lambda r: line_of(r)[-1:] == [far.instance_id])

    holder.release()
    first = line.until(lambda r: holders_of(r) == [ahead[0][0].instance_id])
    assert line_of(first)[2:] == [far.instance_id]  # third: not in view
    for lock, future in ahead:
        future.result(WAIT)
        lock.release()
    waiting.result(WAIT)
    handed = line.until(lambda r: holders_of(r) == [far.instance_id])
    far.release()

    def version(obj: Any) -> str:
        return str(obj["metadata"]["resourceVersion"])

    shown = [obj for kind, obj in received if kind in ("ADDED", "MODIFIED")]
    assert all(label in obj["metadata"].get("labels", {}) for obj in shown), received
    assert first.version not in {version(obj) for obj in shown}
    assert handed.version in {version(obj) for obj in shown}  # learnt from its watch
    # Far fewer versions than the lock went through while it waited.
    assert len(shown) < len(line.history[line.history.index(first) :])


def hold_as_go(locker: Any, name: str, who: str) -> None:
    """Make ``who`` hold the lock as Go lockheed does: a lease of 30 s, and no
    fencing token (Go writes none)."""
    record = locker.execute(Read(name))
    if record is None:
        record = locker.execute(Create(name, LockState(name, "mutex"), {}))
    earliest, latest = locker.clock.bounds()
    take = decide_acquire(Intent(name, who, timedelta(seconds=30)), record, earliest, latest)
    assert isinstance(take, Write) and take.state.leases, take
    meta = {**take.meta, TOKEN_KEY: None, TOKEN_HOLDER_KEY: None}
    written = locker.execute(Replace(name, record.version, take.state, meta, record))
    assert isinstance(written, Record) and TOKEN_HOLDER_KEY not in written.meta


def join_as_the_dead(locker: Any, name: str, who: str) -> None:
    """Put ``who`` in line as a waiter that died there (its entry, and nobody)."""
    record = locker.execute(Read(name))
    earliest, latest = locker.clock.bounds()
    intent = Intent(name, who, timedelta(seconds=30))
    join = decide_acquire(intent, record, earliest, latest, since=int(record.version))
    assert isinstance(join, Write), join
    written = locker.execute(Replace(name, record.version, join.state, join.meta, record))
    assert isinstance(written, Record)


def test_a_waiter_put_out_of_view_reads_the_object_instead_of_the_event(
    configmap_locker: ConfigMapLockers,
) -> None:
    """When a version stops carrying a waiter's view label, the API server sends
    its watch a DELETED whose object is the version *before* (still with the
    waiter in line and labelled) under the new resourceVersion: the locker's
    wait takes it for neither a deletion nor a state, and reads the object.
    The lock is held as Go lockheed holds it (no fencing token): the first in
    line is then labelled (lockheed._queue.in_view)."""
    locker = configmap_locker()
    hold_as_go(locker, "view", "go-holder")
    join_as_the_dead(locker, "view", "first")
    joined = locker.execute(Read("view"))
    assert line_of(joined) == ["first"]
    received = record_watches(locker)
    session = object()
    try:
        waiting = Watch("view", joined.version, None, session=session, view="first")
        # Another writer drops "first" from the line (it leaves: out of view).
        earliest, _ = locker.clock.bounds()
        leave = decide_release(Intent("view", "first"), joined, earliest, None)
        assert isinstance(leave, Write)
        result = {}

        def wait() -> None:
            result["got"] = locker.execute(waiting)

        waiter = threading.Thread(target=wait)
        waiter.start()
        left = locker.execute(Replace("view", joined.version, leave.state, leave.meta, joined))
        assert isinstance(left, Record)
        waiter.join(WAIT)
        got = result["got"]
        assert isinstance(got, Record) and got.version == left.version
        assert line_of(got) == []  # what the object is, not what the event showed
        kinds = [(kind, obj["metadata"]["resourceVersion"]) for kind, obj in received]
        assert ("DELETED", left.version) in kinds, kinds
        shown = next(obj for kind, obj in received if kind == "DELETED")
        assert "first" in shown["metadata"]["annotations"]["lockheed/queue"]  # the one before
    finally:
        locker.end_watch(session)


@pytest.mark.parametrize("holder_dies", [True, False], ids=["dead-holder", "live-holder"])
def test_dead_waiters_ahead_cost_their_bounds_to_a_waiter_out_of_view(
    configmap_locker: ConfigMapLockers,
    watch_line: Callable[[str], LineWatch],
    pool: ThreadPoolExecutor,
    holder_dies: bool,
) -> None:
    """Three waiters dead at the head of the line, more than the two labelled to
    see every change: the live waiter behind them, out of view, still gets the
    lock within about CLAIM_WINDOW per dead waiter after the lock came free,
    not a lease more. The holder either died (its lease runs out and nobody
    writes) or releases, handing the lock to the first dead waiter (a claim the
    live waiter is not sent: it reads by its ``look``); its lease is long, so a
    line that stalled for it fails."""
    locker = configmap_locker()
    duration = DEAD_LEASE if holder_dies else WAIT
    holder = Lock("dead", locker).with_duration(duration).with_renew_interval(None)
    holder.acquire()  # not renewed: if it dies, its lease runs out
    line = watch_line("dead")
    dead = [f"dead-{i}" for i in range(3)]
    for who in dead:
        join_as_the_dead(locker, "dead", who)
    live = Lock("dead", configmap_locker()).with_duration(WAIT)
    bound = len(dead) * CLAIM_WINDOW + DEAD_SLACK
    if holder_dies:
        bound += DEAD_LEASE
        live.acquire(timeout=bound)  # LockTimeout if the line stalled for another lease
    else:
        waiting = pool.submit(live.acquire, timeout=bound)
        line.until(lambda r: line_of(r)[-1:] == [live.instance_id])
        holder.release()  # hands the lock to dead-0, out of the live waiter's view
        waiting.result(WAIT)
    got = line.until(lambda r: holders_of(r) == [live.instance_id])
    assert line_of(got) == []  # the dead were dropped from the line
    live.release()


# ---------------------------------------------------------------- leaving the line


def test_a_waiter_that_times_out_leaves_the_line(
    api: Api,
    configmap_locker: ConfigMapLockers,
    watch_line: Callable[[str], LineWatch],
    pool: ThreadPoolExecutor,
) -> None:
    holder = api.lock("timeout", configmap_locker()).with_duration(60)
    holder.acquire()
    line = watch_line("timeout")
    first = api.lock("timeout", configmap_locker()).with_duration(30)
    stays = pool.submit(first.acquire, timeout=WAIT)
    line.until(lambda r: line_of(r) == [first.instance_id])
    waiter = api.lock("timeout", configmap_locker()).with_duration(30)
    gives_up = pool.submit(waiter.acquire, timeout=3)
    line.until(lambda r: line_of(r) == [first.instance_id, waiter.instance_id])
    with pytest.raises(LockTimeout) as timed_out:
        gives_up.result(WAIT)
    assert timed_out.value.holder == holder.instance_id
    # Gone from the line by the time acquire raised; the waiter ahead kept its place.
    assert line_of(line.locker.execute(Read("timeout"))) == [first.instance_id]
    holder.release()
    stays.result(WAIT)
    first.release()


def test_a_stopped_waiter_leaves_the_line(
    configmap_locker: ConfigMapLockers,
    watch_line: Callable[[str], LineWatch],
    pool: ThreadPoolExecutor,
) -> None:
    holder = Lock("stop", configmap_locker()).with_duration(60)
    holder.acquire()
    line = watch_line("stop")
    stop = threading.Event()
    waiter = Lock("stop", configmap_locker()).with_duration(30).with_stop(stop)
    waiting = pool.submit(waiter.acquire, timeout=WAIT)
    line.until(lambda r: line_of(r) == [waiter.instance_id])
    stop.set()
    with pytest.raises(LockError, match="stopped"):
        waiting.result(WAIT)
    assert line_of(line.locker.execute(Read("stop"))) == []
    holder.release()


def test_a_cancelled_async_acquire_leaves_the_line(
    lockheed_namespace: str,
    lockheed_kubeconfig: Path,
    configmap_locker: ConfigMapLockers,
    watch_line: Callable[[str], LineWatch],
    loop_thread: LoopThread,
) -> None:
    holder = Lock("cancel", configmap_locker()).with_duration(60)
    holder.acquire()
    line = watch_line("cancel")
    locker = AsyncConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig)
    waiter = AsyncLock("cancel", locker).with_duration(30)
    outer = AsyncLock("cancel", locker).with_duration(30)

    async def start() -> tuple[asyncio.Task[int], asyncio.Task[int]]:
        plain = asyncio.ensure_future(waiter.acquire())
        bounded = asyncio.ensure_future(asyncio.wait_for(outer.acquire(), WAIT / 2))
        return plain, bounded

    try:
        plain, bounded = loop_thread.run(start())
        both = sorted([waiter.instance_id, outer.instance_id])
        line.until(lambda r: sorted(line_of(r)) == both)

        async def cancel(task: asyncio.Task[int]) -> BaseException | int | None:
            task.cancel()
            done = await asyncio.gather(task, return_exceptions=True)
            return done[0]

        assert isinstance(loop_thread.run(cancel(plain)), asyncio.CancelledError)
        assert line_of(line.locker.execute(Read("cancel"))) == [outer.instance_id]
        assert isinstance(loop_thread.run(cancel(bounded)), asyncio.CancelledError)
        assert line_of(line.locker.execute(Read("cancel"))) == []
        assert not waiter.held and not outer.held
    finally:
        loop_thread.run(locker.aclose())
    holder.release()


def test_lockheed_run_that_gives_up_leaves_no_entry(
    lockheed_namespace: str,
    lockheed_kubeconfig: Path,
    configmap_locker: ConfigMapLockers,
    watch_line: Callable[[str], LineWatch],
) -> None:
    holder = Lock("job", configmap_locker()).with_duration(60)
    holder.acquire()
    line = watch_line("job")
    argv = lockheed_argv(
        "run", "job", "--duration", "30", "--timeout", "3", "--", "true",
        kubeconfig=lockheed_kubeconfig, namespace=lockheed_namespace,
    )  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, check=False)
    assert done.returncode == 73, done.stderr
    assert holder.instance_id in done.stderr
    # It did wait in line (one entry, then none), and left nothing behind.
    lengths = []
    while True:
        lengths.append(len(line_of(line.record)))
        if line.record is not None and line.record.version == holder_version(line):
            break
        line.next(WAIT)
    assert max(lengths) == 1 and lengths[-1] == 0, lengths
    holder.release()


def holder_version(line: LineWatch) -> str:
    """The object's current version."""
    record: Record | None = line.locker.execute(Read(line.name))
    assert record is not None
    return record.version


class _Answers:
    """An observer of one locker's requests: how many of each verb got each status."""

    def __init__(self) -> None:
        self.seen: Counter[tuple[str, str]] = Counter()

    def request(self, verb: str, kind: str, status: str) -> None:
        self.seen[verb, status] += 1

    def acquired(self, *args: Any) -> None: ...
    def released(self, *args: Any) -> None: ...
    def lost(self, *args: Any) -> None: ...
    def renewal_failed(self, *args: Any) -> None: ...

    def total(self, verb: str) -> int:
        return sum(n for (v, _), n in self.seen.items() if v == verb)


def test_async_waiters_starting_together_join_without_conflicts(
    lockheed_namespace: str,
    lockheed_kubeconfig: Path,
    configmap_locker: ConfigMapLockers,
    watch_line: Callable[[str], LineWatch],
    loop_thread: LoopThread,
) -> None:
    """Tasks of one locker that begin to wait on a held lock at once read the
    same version; one join write each would meet a conflict for all but one
    (and those retrying lose their turns to waiters already in line). Their
    joins (and reads) go out together: no conflict, at most one write and one
    read each, and they get the lock in the order of the line."""
    many = 8
    holder = Lock("together", configmap_locker()).with_duration(60)
    holder.acquire()
    line = watch_line("together")
    locker = AsyncConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig)
    answers = _Answers()
    _observe.attach(locker, answers)
    locks = [AsyncLock("together", locker).with_duration(30) for _ in range(many)]
    order: list[tuple[str, int]] = []  # who got the lock, with its token, in turn

    async def take(lock: AsyncLock) -> int:
        token = await lock.acquire(timeout=WAIT)
        order.append((lock.instance_id, token))
        await lock.release()
        return token

    async def start() -> asyncio.Future[list[int]]:
        return asyncio.gather(*(take(lock) for lock in locks))

    try:
        everyone = loop_thread.run(start())
        ids = sorted(lock.instance_id for lock in locks)
        joined = line.until(lambda r: sorted(line_of(r)) == ids)
        # (One by one, the joins at one version meet N - 1 conflicts, and more
        # after them: over 2N writes and a read after each second conflict.)
        assert answers.seen["update", "409"] == 0, answers.seen
        assert 1 <= answers.total("update") <= many, answers.seen
        assert 1 <= answers.total("get") <= many, answers.seen
        holder.release()

        async def finish() -> list[int]:
            return await everyone

        loop_thread.run(finish())
        assert [who for who, _ in order] == line_of(joined)
        tokens = [token for _, token in order]
        assert tokens == sorted(tokens) and len(set(tokens)) == many
    finally:
        loop_thread.run(locker.aclose())
