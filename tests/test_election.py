"""Leader election (``LeaderElector``, ``AsyncLeaderElector``, ``lockheed elect``).

The pure parts (timing rules, the leading/not-leading state machine) are
tested on their own; every claim about hand-off, loss and release is made on
the real control plane, with the sync and the asyncio elector alike. Every
wait is bounded and driven by an event (a callback, a line a child prints);
"within a lease" is asserted logically: leases are long (60 s) and the
successor must lead while the server's clock is still before the old
leader's written expiry, which only a release makes possible.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from child_output import Child, Lines, python_children
from lockheed import (
    AsyncLeaderElector,
    AsyncLock,
    AsyncMemoryLocker,
    ConfigMapLocker,
    Event,
    LeaderElector,
    LeaseLocker,
    Lock,
    LockLost,
    MemoryLocker,
    tags_contain,
)
from lockheed._clock import ServerClock
from lockheed._election import (
    Election,
    NewLeader,
    StartedLeading,
    StoppedLeading,
    Timing,
    retryable,
)
from lockheed._errors import LockBackendError, LockConflict, LockForbidden, LockStateError
from support import Api, ConfigMapLockers, FlakyLocker, LoopThread, Requests, lockheed_argv
from test_processes import check_holds, parse_holds

WORKER = Path(__file__).with_name("elect_worker.py")
WAIT = 30.0  # bounds every wait for an event; far below the 60 s leases
STARTUP = 60.0  # a child's interpreter start, imports and first request on a busy host
LONG: dict[str, Any] = {"lease_duration": 60.0, "renew_deadline": 40.0, "retry_period": 10.0}
SHORT: dict[str, Any] = {"lease_duration": 6.0, "renew_deadline": 4.0, "retry_period": 1.0}


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("timing", "message"),
    [
        ((10, 10, 2), "lease_duration must be greater than renew_deadline"),
        ((9, 10, 2), "lease_duration must be greater than renew_deadline"),
        ((15, 2.4, 2), "renew_deadline must be greater than retry_period * JitterFactor 1.2"),
        ((15, 2, 2), "renew_deadline must be greater than retry_period * JitterFactor 1.2"),
        ((0, 10, 2), "lease_duration must be greater than zero"),
        ((15, -1, 2), "renew_deadline must be greater than zero"),
        ((15, 10, 0), "retry_period must be greater than zero"),
        ((15, 10, float("nan")), "retry_period must be greater than zero"),
    ],
)
def test_timing_follows_client_go_rules(timing: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=r"^" + message.replace("*", r"\*")):
        Timing.of(*timing)
    for make in (_sync_elector, _async_elector):
        lock, build = make()
        with pytest.raises(ValueError, match=message.replace("*", r"\*")):
            build(lease_duration=timing[0], renew_deadline=timing[1], retry_period=timing[2])
        assert lock._duration is None and lock._renew_interval is None  # left as it was


def test_timing_accepts_seconds_and_timedeltas_only() -> None:
    assert Timing.of(15, 10, 2) == Timing(15.0, 10.0, 2.0)
    assert Timing.of(timedelta(seconds=3), 2.5, timedelta(milliseconds=2000)) == Timing(3, 2.5, 2)
    with pytest.raises(TypeError, match="lease_duration must be seconds or a timedelta"):
        Timing.of("15", 10, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="retry_period must be seconds or a timedelta"):
        Timing.of(15, 10, True)


def _sync_elector() -> tuple[Lock, Callable[..., LeaderElector]]:
    lock = Lock("elect", MemoryLocker())
    return lock, lambda **timing: LeaderElector(lock, **timing)


def _async_elector() -> tuple[AsyncLock, Callable[..., AsyncLeaderElector]]:
    lock = AsyncLock("elect", AsyncMemoryLocker(MemoryLocker()))
    return lock, lambda **timing: AsyncLeaderElector(lock, **timing)


def test_electors_refuse_the_other_api_and_a_held_lock() -> None:
    store = MemoryLocker()
    with pytest.raises(TypeError, match="LeaderElector takes a Lock, not AsyncLock"):
        LeaderElector(AsyncLock("elect", AsyncMemoryLocker(store)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="AsyncLeaderElector takes an AsyncLock, not Lock"):
        AsyncLeaderElector(Lock("elect", store))  # type: ignore[arg-type]
    held = Lock("elect", store).with_duration(30)
    held.acquire()
    with pytest.raises(ValueError, match="is held"):
        LeaderElector(held)
    assert held.held and held._duration == timedelta(seconds=30)  # untouched
    held.release()


def test_timing_is_mapped_onto_the_lock() -> None:
    lock = Lock("elect", MemoryLocker())
    elector = LeaderElector(lock, lease_duration=15, renew_deadline=10, retry_period=2)
    assert elector.identity == lock.instance_id
    assert lock._duration == timedelta(seconds=15)
    assert lock._renew_interval == timedelta(seconds=2)
    before = lock._clock.monotonic()
    lock.acquire()
    try:
        # Leadership ends when renewals have failed for the renew deadline, not the lease.
        assert lock._deadline is not None
        assert lock._deadline <= lock._clock.monotonic() + 10.0
        assert lock._deadline >= before + 10.0
    finally:
        lock.release()


def test_state_machine_gives_each_notice_once_and_in_order() -> None:
    e = Election("me")
    assert e.observed(None) == []
    assert e.observed("a") == [NewLeader("a")]
    assert e.observed("a") == []  # the same leader seen again (each renewal wakes the watch)
    assert e.observed("b") == [NewLeader("b")]
    assert e.won() == [NewLeader("me"), StartedLeading()]
    assert e.won() == []
    assert e.observed("c") == []  # only while campaigning
    assert (e.leader, e.leading) == ("me", True)
    assert e.ended("thief") == [StoppedLeading(), NewLeader("thief")]
    assert e.ended("thief") == []
    assert (e.leader, e.leading) == ("thief", False)
    assert e.won() == [NewLeader("me"), StartedLeading()]
    assert e.ended() == [StoppedLeading()]  # resigned: nobody known to lead
    assert e.leader is None
    assert e.won() == [NewLeader("me"), StartedLeading()]
    assert e.ended("me") == [StoppedLeading()]


def test_campaign_retries_only_what_can_pass() -> None:
    assert retryable(LockBackendError("connection refused"))
    assert retryable(LockConflict("too many write conflicts"))
    assert not retryable(LockForbidden("forbidden"))
    assert not retryable(LockStateError("malformed"))
    assert not retryable(ValueError("bad"))


def test_run_semantics_in_memory() -> None:
    """How run() ends (unit level; Kubernetes behaviour is tested below)."""
    store = MemoryLocker()
    events: list[Event] = []

    def boom(who: str) -> None:
        raise RuntimeError(f"callback for {who} failed")

    lock = Lock("unit", store).with_event_handler(events.append)
    elector = LeaderElector(lock, **SHORT, on_new_leader=boom)
    assert elector.run(lambda ended: "done") == "done"  # a raising callback stops nothing
    assert any("NewLeader callback failed" in e.message for e in events)
    assert not lock.held and lock_free_in(store, "unit")

    def fails(ended: threading.Event) -> None:
        raise KeyError("work failed")

    with pytest.raises(KeyError, match="work failed"):
        elector.run(fails)
    assert not lock.held and lock_free_in(store, "unit")  # released before re-raising

    entered = threading.Event()

    def blocks(ended: threading.Event) -> str:
        entered.set()
        return "stopped" if ended.wait(WAIT) else "timeout"

    outcome: Future[Any] = Future()
    thread = threading.Thread(target=lambda: outcome.set_result(elector.run(blocks)))
    thread.start()
    assert entered.wait(WAIT)
    with pytest.raises(RuntimeError, match="already running"):
        elector.run()
    elector.stop()
    assert outcome.result(WAIT) == "stopped"
    thread.join(WAIT)
    assert elector.run(lambda ended: "never") is None  # stopped electors stay stopped
    assert lock_free_in(store, "unit")


def test_async_run_semantics_in_memory() -> None:
    store = MemoryLocker()
    lock = AsyncLock("unit", AsyncMemoryLocker(store))
    started = asyncio.Event()
    elector = AsyncLeaderElector(lock, **SHORT, on_started_leading=started.set)

    async def done() -> str:
        return "done"

    async def fails() -> None:
        raise KeyError("work failed")

    async def scenario() -> None:
        assert await elector.run(done) == "done"
        assert not lock.held and lock_free_in(store, "unit")
        with pytest.raises(KeyError, match="work failed"):
            await elector.run(fails)
        assert not lock.held and lock_free_in(store, "unit")  # released before re-raising
        async with elector.leading():
            assert elector.is_leader
        assert not elector.is_leader and lock_free_in(store, "unit")
        started.clear()
        running = asyncio.ensure_future(elector.run())  # lead until stopped
        await asyncio.wait_for(started.wait(), WAIT)
        elector.stop()
        assert await running is None  # stop() is not a cancellation of the caller
        assert lock_free_in(store, "unit")
        assert await elector.run(done) is None  # stopped electors stay stopped

    asyncio.run(scenario())


def lock_free_in(store: MemoryLocker, name: str) -> bool:
    probe = Lock(name, store)
    try:
        probe.acquire(blocking=False)
    except TimeoutError:
        return False
    probe.release()
    return True


# ---------------------------------------------------------------- the harness


class Recorder:
    """What one elector reported (callbacks, work), in order; waits that time out."""

    CALLBACKS = ("new", "started", "stopped")

    def __init__(self) -> None:
        self.entries: list[tuple[Any, ...]] = []
        self._cond = threading.Condition()

    def add(self, *entry: Any) -> None:
        with self._cond:
            self.entries.append(entry)
            self._cond.notify_all()

    def wait_for(self, *entry: Any, count: int = 1, timeout: float = WAIT) -> None:
        def seen() -> bool:
            return sum(1 for e in self.entries if e[: len(entry)] == entry) >= count

        with self._cond:
            if not self._cond.wait_for(seen, timeout):
                raise AssertionError(f"no {entry} (x{count}) within {timeout} s: {self.entries}")

    def callbacks(self) -> list[tuple[Any, ...]]:
        with self._cond:
            return [e for e in self.entries if e[0] in self.CALLBACKS]

    def work(self) -> list[str]:
        with self._cond:
            return [e[1] for e in self.entries if e[0] == "work"]


class Candidate:
    """One elector of either API running ``run(work)``; its work records its term
    and waits until the test finishes it or the term ends (sync: the event is
    set, async: it is cancelled)."""

    def __init__(
        self,
        api: Api,
        locker: Any,
        name: str,
        identity: str,
        timing: dict[str, Any],
        tags: Sequence[str] = (),
    ):
        self.api = api
        self.rec = Recorder()
        self.tokens: list[int | None] = []
        self.expiries: list[datetime | None] = []
        self.outcome: Future[Any] = Future()
        self.on_stop: Callable[[], object] = lambda: None  # called before "stopped" is recorded
        callbacks: dict[str, Any] = {
            "on_new_leader": lambda who: self.rec.add("new", who),
            "on_started_leading": lambda: self.rec.add("started"),
            "on_stopped_leading": self._stopped,
        }
        self.elector: Any
        if api.runner is None:
            lock: Any = Lock(name, locker, instance_id=identity).with_tags(tags)
            self.elector = LeaderElector(lock, **timing, **callbacks)
        else:
            lock = AsyncLock(name, api.twin(locker), instance_id=identity).with_tags(tags)
            self.elector = AsyncLeaderElector(lock, **timing, **callbacks)
        self.lock = lock
        self._wake: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._finish: asyncio.Event | None = None

    def _stopped(self) -> None:
        self.on_stop()
        self.rec.add("stopped")

    @property
    def runner(self) -> LoopThread:
        assert self.api.runner is not None
        return self.api.runner

    def _began(self) -> None:
        self.tokens.append(self.lock.fencing_token)
        self.expiries.append(self.lock.expires_at)
        self.rec.add("work", "started")

    def _sync_work(self, ended: threading.Event) -> str:
        wake = self._wake = queue.SimpleQueue()

        def tell_ended() -> None:
            ended.wait()
            wake.put("ended")

        threading.Thread(target=tell_ended, daemon=True).start()
        self._began()
        why = wake.get(timeout=WAIT * 3)
        self.rec.add("work", why)
        return why

    async def _async_work(self) -> str:
        finish = self._finish = asyncio.Event()
        self._began()
        try:
            await asyncio.wait_for(finish.wait(), WAIT * 3)
        except asyncio.CancelledError:
            self.rec.add("work", "cancelled")
            raise
        self.rec.add("work", "finished")
        return "finished"

    def start(self, once: bool = False) -> Candidate:
        if self.api.runner is None:

            def go() -> None:
                try:
                    self.outcome.set_result(self.elector.run(self._sync_work, once=once))
                except BaseException as exc:
                    self.outcome.set_exception(exc)

            threading.Thread(target=go, name="test-elector", daemon=True).start()
        else:
            self.outcome = asyncio.run_coroutine_threadsafe(
                self.elector.run(self._async_work, once=once), self.runner.loop
            )
        return self

    def finish_work(self) -> None:
        if self.api.runner is None:
            self._wake.put("finished")
        else:
            finish = self._finish
            assert finish is not None
            self.runner.loop.call_soon_threadsafe(finish.set)

    def stop(self) -> None:
        if self.api.runner is None:
            self.elector.stop()
        else:
            self.runner.loop.call_soon_threadsafe(self.elector.stop)

    def result(self) -> Any:
        return self.outcome.result(WAIT)

    @property
    def ended_mark(self) -> str:
        return "ended" if self.api.runner is None else "cancelled"


KubeLockers = Callable[[], Any]


@pytest.fixture(params=["configmap", "lease"])
def kube_lockers(
    request: pytest.FixtureRequest, lockheed_namespace: str, lockheed_kubeconfig: Path
) -> Iterator[KubeLockers]:
    """A factory of lockers on the test namespace, of both kinds of object: the
    elector only uses the lock API, so it must behave the same on each."""
    kind = LeaseLocker if request.param == "lease" else ConfigMapLocker
    made: list[Any] = []

    def make() -> Any:
        locker = kind(lockheed_namespace, config=lockheed_kubeconfig)
        made.append(locker)
        return locker

    yield make
    for locker in made:
        locker.close()


def before_expiry(clock: ServerClock, expires: datetime | None) -> bool:
    """Whether even the latest possible server time now is before ``expires``."""
    assert expires is not None
    return clock.bounds()[1] < expires


def lock_is_free(locker: Any, name: str) -> bool:
    probe = Lock(name, locker).with_duration(5)
    try:
        probe.acquire(blocking=False)
    except TimeoutError:
        return False
    probe.release()
    return True


def delete_lock_object(locker: Any, name: str) -> None:
    status, _ = locker.api.request("DELETE", "/" + locker.object_name(name), lock=name)
    assert status == 200


# ---------------------------------------------------------------- in one process


@pytest.mark.lockheed_kube
def test_release_on_clean_exit_hands_over_within_the_lease(
    api: Api, kube_lockers: KubeLockers
) -> None:
    locker = kube_lockers()
    a = Candidate(api, locker, "handoff", "a", LONG).start()
    a.rec.wait_for("work", "started")
    b = Candidate(api, kube_lockers(), "handoff", "b", LONG).start()
    b.rec.wait_for("new", "a")  # seen from b's watch while it campaigns
    assert (b.elector.leader, b.elector.is_leader) == ("a", False)
    assert (a.elector.leader, a.elector.is_leader) == ("a", True)

    a.finish_work()
    assert a.result() == "finished"  # run() returns the work's result, after releasing
    b.rec.wait_for("work", "started")
    assert before_expiry(locker.clock, a.expiries[0]), "b led only once a's lease had run out"
    assert (b.elector.leader, b.elector.is_leader) == ("b", True)
    assert not a.elector.is_leader
    assert a.rec.callbacks() == [("new", "a"), ("started",), ("stopped",)]
    assert b.rec.callbacks() == [("new", "a"), ("new", "b"), ("started",)]
    assert b.tokens[0] is not None and a.tokens[0] is not None and b.tokens[0] > a.tokens[0]

    b.stop()
    assert b.result() == ("ended" if api.runner is None else None)
    assert b.rec.callbacks()[-1] == ("stopped",)
    assert b.rec.work() == ["started", b.ended_mark]
    assert lock_is_free(locker, "handoff")


@pytest.mark.lockheed_kube
def test_loss_stops_the_work_then_the_elector_campaigns_again(
    api: Api, kube_lockers: KubeLockers
) -> None:
    locker = kube_lockers()
    a = Candidate(api, locker, "preempt", "a", SHORT, tags=["preemptible"]).start()
    a.rec.wait_for("work", "started")
    thief = Lock("preempt", locker, instance_id="thief").with_duration(60)
    thief_token = thief.with_force(tags_contain("preemptible")).acquire(timeout=WAIT)

    a.rec.wait_for("new", "thief")  # told right after on_stopped_leading, at the next renewal
    a.rec.wait_for("work", a.ended_mark)
    assert not a.elector.is_leader and a.elector.leader == "thief"
    assert not a.outcome.done()  # campaigning again
    thief.release()

    a.rec.wait_for("work", "started", count=2)
    assert a.rec.callbacks() == [
        ("new", "a"),
        ("started",),
        ("stopped",),
        ("new", "thief"),
        ("new", "a"),
        ("started",),
    ]
    assert a.rec.work() == ["started", a.ended_mark, "started"]
    first, second = a.tokens
    assert first is not None and second is not None and first < thief_token < second
    a.finish_work()
    assert a.result() == "finished"
    assert lock_is_free(locker, "preempt")


@pytest.mark.lockheed_kube
def test_deleted_lock_object_ends_a_single_term(api: Api, kube_lockers: KubeLockers) -> None:
    locker = kube_lockers()
    a = Candidate(api, locker, "vanishing", "a", SHORT).start(once=True)
    a.rec.wait_for("work", "started")
    delete_lock_object(locker, "vanishing")
    with pytest.raises(LockLost, match="object was deleted"):
        a.result()
    assert a.rec.callbacks() == [("new", "a"), ("started",), ("stopped",)]
    assert a.rec.work() == ["started", a.ended_mark]
    assert not a.elector.is_leader and a.elector.leader is None


@pytest.mark.lockheed_kube
def test_leading_block_is_cancelled_on_loss(
    loop_thread: LoopThread, kube_lockers: KubeLockers
) -> None:
    api = Api("async", loop_thread)
    locker = kube_lockers()
    rec = Recorder()
    lock = AsyncLock("block", api.twin(locker), instance_id="a")
    elector = AsyncLeaderElector(
        lock, **SHORT, on_stopped_leading=lambda: rec.add("stopped", lock.held)
    )

    async def lead() -> None:
        async with elector.leading() as held:
            assert held is lock and elector.is_leader
            rec.add("block", "entered")
            try:
                await asyncio.sleep(WAIT * 3)  # a long job that must not outlive leadership
            except asyncio.CancelledError:
                rec.add("block", "cancelled")
                raise

    outcome = asyncio.run_coroutine_threadsafe(lead(), loop_thread.loop)
    try:
        rec.wait_for("block", "entered")
        delete_lock_object(locker, "block")
        with pytest.raises(LockLost, match="object was deleted"):
            outcome.result(WAIT)
        assert rec.entries == [("block", "entered"), ("stopped", False), ("block", "cancelled")]
        assert not elector.is_leader
    finally:
        api.close()


@pytest.mark.lockheed_kube
def test_a_cancelled_async_leader_releases_to_a_waiting_candidate(
    loop_thread: LoopThread, kube_lockers: KubeLockers
) -> None:
    """Cancelling the task that runs an AsyncLeaderElector (as asyncio.run does on
    Ctrl-C, or a TaskGroup when a sibling fails) is not stop(): the cancellation
    goes on up, but on its way the work is cancelled and leadership released, so
    a waiting candidate leads while the cancelled leader's lease is still live."""
    api = Api("async", loop_thread)
    locker = kube_lockers()
    try:
        a = Candidate(api, locker, "cancelled", "a", LONG).start()
        a.rec.wait_for("work", "started")
        b = Candidate(Api("sync", None), kube_lockers(), "cancelled", "b", LONG).start()
        b.rec.wait_for("new", "a")
        assert a.outcome.cancel()  # cancels the task running a.elector.run() on the loop
        b.rec.wait_for("work", "started")
        assert before_expiry(locker.clock, a.expiries[0]), "b led only once a's lease had run out"
        a.rec.wait_for("stopped")  # told once its release has returned (b may lead sooner)
        assert a.rec.work() == ["started", "cancelled"]
        assert a.rec.callbacks() == [("new", "a"), ("started",), ("stopped",)]
        assert not a.elector.is_leader and not a.lock.held
        assert b.tokens[0] is not None and a.tokens[0] is not None and b.tokens[0] > a.tokens[0]
        b.stop()
        assert b.result() == "ended"
        assert lock_is_free(locker, "cancelled")
    finally:
        api.close()


@pytest.mark.lockheed_kube
def test_leader_steps_down_at_the_renew_deadline_before_its_lease_ends(
    api: Api, kube_lockers: KubeLockers
) -> None:
    """A partitioned leader stops leading once renewals have failed for the renew
    deadline (3 s), while its lease (60 s) still keeps everyone else out; when
    the API server is back it leads again."""
    locker = kube_lockers()
    flaky = FlakyLocker(locker)
    timing = {"lease_duration": 60.0, "renew_deadline": 3.0, "retry_period": 1.0}
    a = Candidate(api, flaky, "partition", "a", timing).start()
    a.rec.wait_for("work", "started")
    stopped_while_live = threading.Event()

    def on_stop() -> None:
        if before_expiry(locker.clock, a.lock.expires_at):
            stopped_while_live.set()

    a.on_stop = on_stop
    flaky.broken.set()
    a.rec.wait_for("stopped")
    assert stopped_while_live.is_set(), "stopped leading only after its lease had run out"
    a.rec.wait_for("work", a.ended_mark)
    assert not a.elector.is_leader
    assert not lock_is_free(locker, "partition")  # the lease still holds others off

    flaky.broken.clear()  # the campaign retries every retry period, and takes its lease back
    a.rec.wait_for("work", "started", count=2)
    assert a.rec.callbacks() == [
        ("new", "a"),
        ("started",),
        ("stopped",),
        ("new", "a"),
        ("started",),
    ]
    a.stop()
    a.result()
    assert lock_is_free(locker, "partition")


@pytest.mark.lockheed_kube
def test_candidate_sees_new_leaders_through_its_watch_alone(
    kube_lockers: KubeLockers,
) -> None:
    """on_new_leader while campaigning costs no request beyond the acquire's own:
    a change of leader is seen from the watch alone (no GET, no LIST)."""
    mine = kube_lockers()
    others = kube_lockers()
    counts = Requests(mine)
    first = Lock("observed", others, instance_id="first").with_duration(60).with_tags(["x"])
    first.acquire()
    b = Candidate(Api("sync", None), mine, "observed", "b", LONG).start()
    b.rec.wait_for("new", "first")
    joined = counts.snapshot()  # the acquire's read, and its write joining the line
    assert joined["get"] == 1 and "list" not in joined, joined
    second = Lock("observed", others, instance_id="second").with_duration(60)
    second.with_force(tags_contain("x")).acquire(timeout=WAIT)
    b.rec.wait_for("new", "second")
    since = counts.since(joined)
    assert set(since) <= {"watch"}, since
    second.release()
    b.rec.wait_for("work", "started")
    assert b.rec.callbacks() == [("new", "first"), ("new", "second"), ("new", "b"), ("started",)]
    b.stop()
    assert b.result() == "ended"


# ---------------------------------------------------------------- across processes


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """Start ``elect_worker.py`` with arguments; every worker is killed at the end."""
    with python_children(WORKER, tmp_path) as start:
        yield start


def worker_args(namespace: str, kubeconfig: Path, lock: str, timing: dict[str, Any]) -> list[str]:
    args = ["--kubeconfig", str(kubeconfig), "--namespace", namespace, "--lock", lock]
    for key, value in timing.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


@pytest.mark.lockheed_kube
@pytest.mark.timeout(300)
def test_one_leader_at_a_time_across_processes(
    spawn: Callable[..., Child], lockheed_namespace: str, lockheed_kubeconfig: Path, tmp_path: Path
) -> None:
    processes, terms = 4, 5
    log, counter = tmp_path / "terms.log", tmp_path / "counter"
    log.touch()
    counter.touch()
    args = [
        "terms",
        *worker_args(lockheed_namespace, lockheed_kubeconfig, "singleton", LONG),
        *("--terms", str(terms), "--log", str(log), "--counter", str(counter)),
    ]
    start_read, start_write = os.pipe()
    try:
        workers = [
            spawn(
                [*args, "--api", ("sync", "async")[i % 2], "--start-fd", str(start_read)],
                pass_fds=[start_read],
            )
            for i in range(processes)
        ]
        os.close(start_read)
        start_read = -1
        for worker in workers:
            worker.out.expect("READY", STARTUP)
        os.write(start_write, b"g" * processes)
    finally:
        os.close(start_write)
        if start_read >= 0:
            os.close(start_read)
    for worker in workers:
        # Each term is released on return, so the next leader is woken by the
        # release: far sooner than the 60 s lease would allow.
        assert worker.process.wait(120) == 0, worker.describe()
        worker.out.expect("DONE", 10)

    holds = parse_holds(log.read_text())
    verdict = check_holds(holds)
    assert verdict.holds == processes * terms
    assert sorted({h.pid for h in holds}) == sorted(w.pid for w in workers)
    assert verdict.overlaps == [], verdict.overlaps[:3]
    assert verdict.token_inversions == [], verdict.token_inversions[:3]
    assert int(counter.read_bytes()) == processes * terms


@pytest.mark.lockheed_kube
@pytest.mark.timeout(180)
@pytest.mark.parametrize("worker_api", ["sync", "async"])
def test_sigterm_releases_leadership_to_a_waiting_candidate(
    spawn: Callable[..., Child],
    lockheed_namespace: str,
    lockheed_kubeconfig: Path,
    configmap_locker: ConfigMapLockers,
    worker_api: str,
) -> None:
    locker = configmap_locker()
    a = spawn(
        [
            "lead",
            *worker_args(lockheed_namespace, lockheed_kubeconfig, "sigterm", LONG),
            *("--api", worker_api, "--identity", "a"),
        ]
    )
    _, token, expires = a.out.expect("LEADING", STARTUP).split()
    b = Candidate(Api("sync", None), locker, "sigterm", "b", LONG).start()
    b.rec.wait_for("new", "a")
    os.kill(a.pid, signal.SIGTERM)
    b.rec.wait_for("work", "started")
    assert before_expiry(locker.clock, datetime.fromisoformat(expires)), "a never released"
    assert b.tokens[0] is not None and b.tokens[0] > int(token)
    if worker_api == "async":
        a.out.expect("CANCELLED", WAIT)  # the work is cancelled by stop()
    stopped = a.out.expect("STOPPED", WAIT)
    assert stopped == ("STOPPED ENDED" if worker_api == "sync" else "STOPPED None")
    assert a.process.wait(WAIT) == 0, a.describe()
    b.stop()
    assert b.result() == "ended"


# ---------------------------------------------------------------- lockheed elect


CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    def terminated(signum, frame):
        print("terminated", flush=True)
        sys.exit(int(os.environ.get("ON_TERM", "0")))
    signal.signal(signal.SIGTERM, terminated)
    print("started", os.environ["LOCKHEED_FENCING_TOKEN"], os.environ["LOCKHEED_LEADER"],
          flush=True)
    if len(sys.argv) > 1:
        sys.exit(int(sys.argv[1]))
    time.sleep(120)
    print("not stopped", flush=True)
    """
)


class Elect:
    """``lockheed elect`` in a child process, its stdout (the command's) and stderr read
    line by line."""

    def __init__(self, kubeconfig: Path, namespace: str, *args: str, command: Sequence[str]):
        self.process = subprocess.Popen(
            lockheed_argv(
                "elect", *args, "--", *command, kubeconfig=kubeconfig, namespace=namespace
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self.out = Lines(self.process.stdout)
        self.err = Lines(self.process.stderr)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        self.out.close()
        self.err.close()


@pytest.fixture
def elect_cli(lockheed_kubeconfig: Path, lockheed_namespace: str) -> Iterator[Callable[..., Elect]]:
    made: list[Elect] = []

    def start(*args: str, command: Sequence[str] = (sys.executable, "-c", CHILD)) -> Elect:
        e = Elect(lockheed_kubeconfig, lockheed_namespace, *args, command=command)
        made.append(e)
        return e

    yield start
    for e in made:
        e.close()


FAST = ["--lease-duration", "6", "--renew-deadline", "4", "--retry-period", "1"]


@pytest.mark.lockheed_kube
@pytest.mark.timeout(180)
def test_elect_runs_the_command_only_while_leading(
    elect_cli: Callable[..., Elect], configmap_locker: ConfigMapLockers
) -> None:
    locker = configmap_locker()
    holder = Lock("job", locker, instance_id="holder").with_duration(60)
    holder_token = holder.acquire()
    e = elect_cli("job", "--identity", "cli", "--tag", "preemptible", *FAST)
    e.err.expect("lockheed: leader is holder", STARTUP)  # campaigning: the command waits
    assert e.out.drain() == []
    holder.release()  # hands the lock to the first in line: lockheed elect

    _, token, identity = e.out.expect("started", WAIT).split()
    assert identity == "cli"
    assert int(token) > holder_token  # it started under a lease of its own, after the holder's
    e.err.expect("lockheed: leading 'job' as cli", WAIT)

    thief = Lock("job", locker, instance_id="thief").with_duration(60)
    # The hand-off gave the lock the new holder's tags: forced on exactly those.
    thief_token = thief.with_force(tags_contain("preemptible")).acquire(timeout=WAIT)
    e.out.expect("terminated", WAIT)  # SIGTERM at the loss
    e.err.expect("lockheed: leader is thief", WAIT)
    thief.release()
    _, again, _ = e.out.expect("started", WAIT).split()  # campaigned again, and leads
    assert int(again) > thief_token

    e.process.send_signal(signal.SIGTERM)  # forwarded to the command; then released
    e.out.expect("terminated", WAIT)
    assert e.process.wait(WAIT) == 0  # the command's status
    assert lock_is_free(locker, "job")
    assert "not stopped" not in e.out.drain()


@pytest.mark.lockheed_kube
@pytest.mark.timeout(180)
def test_elect_exit_statuses(
    elect_cli: Callable[..., Elect],
    configmap_locker: ConfigMapLockers,
    lockheed_namespace: str,
    lockheed_kubeconfig: Path,
) -> None:
    locker = configmap_locker()
    # The command's own status, and leadership released when it exits by itself
    # (here on a Lease: --backend as for run and list).
    command = [sys.executable, "-c", CHILD, "3"]
    done = elect_cli("status", "--backend", "lease", *FAST, command=command)
    assert done.process.wait(STARTUP) == 3
    done.out.expect("started", 1)
    with LeaseLocker(lockheed_namespace, config=lockheed_kubeconfig) as leases:
        assert lock_is_free(leases, "status")
    missing = elect_cli("status", *FAST, command=["/nonexistent/command"])
    assert missing.process.wait(STARTUP) == 127
    assert lock_is_free(locker, "status")

    # --once: a loss ends lockheed with 75 after the command got SIGTERM.
    once = elect_cli("lost", "--once", "--tag", "preemptible", *FAST)
    once.out.expect("started", STARTUP)
    thief = Lock("lost", locker, instance_id="thief").with_duration(60)
    thief.with_force(tags_contain("preemptible")).acquire(timeout=WAIT)
    once.out.expect("terminated", WAIT)
    assert once.process.wait(WAIT) == 75
    once.err.expect("lockheed: leadership lost", 1)
    thief.release()

    # A signal while campaigning: 128 + its number, and nothing was started.
    holder = Lock("busy", locker, instance_id="holder").with_duration(60)
    holder.acquire()
    waiting = elect_cli("busy", *FAST)
    waiting.err.expect("lockheed: leader is holder", STARTUP)
    waiting.process.send_signal(signal.SIGTERM)
    assert waiting.process.wait(WAIT) == 128 + signal.SIGTERM
    assert waiting.out.drain() == []
    holder.release()


@pytest.mark.lockheed_kube
def test_elect_bad_arguments_fail_clearly(elect_cli: Callable[..., Elect]) -> None:
    cases = [
        (("job", "--lease-duration", "10", "--renew-deadline", "12"), "lease_duration must be"),
        (("job", "--retry-period", "9"), "renew_deadline must be greater than retry_period"),
        (("Bad_Name",), "lock name 'Bad_Name'"),
        (("job",), "give a command after '--'"),
    ]
    for args, message in cases:
        command = () if args == ("job",) else ("true",)
        bad = elect_cli(*args, command=command)
        assert bad.process.wait(STARTUP) == 2, args
        bad.err.close()  # read to the end
        printed = "\n".join(bad.err.drain())
        assert message in printed, (args, printed)
        assert "Traceback" not in printed
