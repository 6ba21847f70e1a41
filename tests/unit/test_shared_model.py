"""A stateful model of shared locks and semaphores through the pure core.

Hosts take a readers-writer lock (shared and exclusive holders) or a
semaphore (at most ``LIMIT`` holders, one exclusive host among them), line
up, are handed the lock, renew, release, give up, and die holding or in line.
Each host runs the core's real flows (with :mod:`lockheed._shared_core`'s
decisions) against a Memory store on a shared fake clock, its server-time
bounds from second-truncated Date samples, as in production. Checked
throughout:

* never more than the limit of hosts that believe they hold the lock (before
  their own loss deadlines) at one true moment, and never an exclusive
  believer together with anyone else;
* fencing tokens: an exclusive holder's token is larger than every earlier
  holder's, and a shared holder's larger than every earlier exclusive one's;
* the stored line only ever holds hosts that joined and did not leave;

and at the end, no live waiter starves: with holders releasing and time
passing, every host still waiting gets the lock, past any dead ones.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import event as hypothesis_event
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lockheed import LockTimeout, MemoryLocker
from lockheed._clock import ServerClock
from lockheed._core import (
    CONFLICT,
    UNCHANGED,
    Acquired,
    Flow,
    Read,
    Released,
    Replace,
    Sleep,
    Watch,
    acquire_flow,
    loss_margin,
    release_flow,
    renew_flow,
)
from lockheed._queue import read_queue
from lockheed._shared_core import (
    SEMAPHORE,
    SHARED,
    SharedIntent,
    decide_shared_acquire,
    decide_shared_release,
    decide_shared_renew,
)

NAME = "shared"
START = 1_764_489_600.0
HOSTS = 6
LIMIT = 3
DURATIONS = (10, 30, 3, 60, 8, 20)


def event(what: str) -> None:
    with contextlib.suppress(InvalidArgument):
        hypothesis_event(what)


@dataclass
class Host:
    intent: SharedIntent
    clock: ServerClock
    flow: Flow | None = None
    waiting_on: Any = None
    token: int | None = None
    record: Any = None
    deadline: float | None = None
    holding: bool = False
    dead: bool = False
    joined: bool = False
    patient: bool = True
    acquisitions: int = 0

    @property
    def exclusive(self) -> bool:
        return self.intent.exclusive


class SharedModel(RuleBasedStateMachine):
    lock_type = SHARED
    limit: int | None = None
    exclusive_hosts: tuple[int, ...] = (0, 1)

    def __init__(self) -> None:
        super().__init__()
        self.mono = 500.0
        self.true = START
        self.store = MemoryLocker(wall=lambda: self.true, monotonic=lambda: self.mono)
        self.hosts = [
            Host(
                SharedIntent(
                    NAME,
                    f"h{i}",
                    timedelta(seconds=DURATIONS[i]),
                    lock_type=self.lock_type,
                    exclusive=i in self.exclusive_hosts,
                    limit=self.limit,
                ),
                ServerClock(monotonic=lambda: self.mono, wall=lambda: self.true),
            )
            for i in range(HOSTS)
        ]
        self.tokens: list[tuple[int, bool]] = []  # (token, exclusive) of each new holding

    # ------------------------------------------------------------ driving flows

    def sample(self, host: Host) -> None:
        host.clock.observe(math.floor(self.true), self.mono, self.mono)

    def step(self, host: Host, value: Any = None) -> None:
        flow = host.flow
        assert flow is not None
        for _ in range(200):
            try:
                effect = flow.send(value)
            except StopIteration as stop:
                host.flow, host.waiting_on = None, None
                self.acquired(host, stop.value)
                return
            except LockTimeout:
                host.flow, host.waiting_on = None, None
                self.leave(host)
                event("acquire timed out: left the line")
                return
            if isinstance(effect, (Watch, Sleep)):
                host.waiting_on = effect
                if self.ready(host):
                    value = self.deliver(host)
                    continue
                return
            value = self.store.execute(effect)
            self.sample(host)
        raise AssertionError(f"{host.intent.instance_id}'s acquire ran away")

    def ready(self, host: Host) -> bool:
        effect = host.waiting_on
        if isinstance(effect, Sleep):
            return self.mono >= effect.until
        assert isinstance(effect, Watch)
        if self.store.version_of(NAME) != effect.version:
            return True
        return effect.until is not None and self.mono >= effect.until

    def deliver(self, host: Host) -> Any:
        effect, host.waiting_on = host.waiting_on, None
        if isinstance(effect, Sleep):
            return None
        if self.store.version_of(NAME) != effect.version:
            result = self.store.execute(Read(NAME))
            self.sample(host)
            return result
        return UNCHANGED

    def believers(self) -> list[Host]:
        return [
            h
            for h in self.hosts
            if h.holding and not h.dead and (h.deadline is None or self.mono < h.deadline)
        ]

    def acquired(self, host: Host, got: Acquired) -> None:
        assert isinstance(got, Acquired)
        others = [h for h in self.believers() if h is not host]
        if host.exclusive:
            assert not others, f"{host.intent.instance_id} exclusive beside {others}"
        else:
            assert not any(h.exclusive for h in others), "shared beside an exclusive holder"
        if self.limit is not None:
            assert len(others) < self.limit, "more holders than the limit"
        if host.holding and got.token == host.token:
            event("took its own lease back: the same token")
        else:
            earlier = [t for t, ex in self.tokens if ex or host.exclusive]
            assert all(got.token > t for t in earlier), (host.exclusive, got.token, self.tokens)
            self.tokens.append((got.token, host.exclusive))
        host.holding, host.token, host.record, host.deadline = (
            True,
            got.token,
            got.record,
            got.deadline,
        )
        host.joined = False
        host.acquisitions += 1
        kind = "exclusive" if host.exclusive else "shared"
        event(f"{kind}: handed over in line" if got.handed else f"{kind}: took the lock")

    def leave(self, host: Host) -> None:
        flow = release_flow(host.intent, host.clock, None, None, decide=decide_shared_release)
        done = self.run(host, flow)
        assert isinstance(done, Released)
        host.joined = False

    def run(self, host: Host, flow: Flow) -> Any:
        value: Any = None
        for _ in range(200):
            try:
                effect = flow.send(value)
            except StopIteration as stop:
                return stop.value
            assert not isinstance(effect, (Watch, Sleep)), effect
            value = self.store.execute(effect)
            self.sample(host)
        raise AssertionError("a flow ran away")

    # ------------------------------------------------------------ rules

    def live(self, i: int) -> Host | None:
        host = self.hosts[i]
        return None if host.dead else host

    @rule(i=st.integers(0, HOSTS - 1), patience=st.sampled_from([None, 0.0, 2.0, 20.0]))
    def acquire(self, i: int, patience: float | None) -> None:
        host = self.live(i)
        if host is None or host.flow is not None or host.holding:
            return
        self.sample(host)
        deadline = None if patience is None else self.mono + patience
        host.flow = acquire_flow(host.intent, host.clock, deadline, decide=decide_shared_acquire)
        host.joined, host.patient = True, deadline is None
        self.step(host)

    @rule(i=st.integers(0, HOSTS - 1))
    def poke(self, i: int) -> None:
        host = self.live(i)
        if host is None or host.flow is None or not self.ready(host):
            return
        self.step(host, self.deliver(host))

    @rule(quarters=st.integers(1, 40))
    def advance(self, quarters: int) -> None:
        self.mono += quarters / 4
        self.true += quarters / 4

    @rule(i=st.integers(0, HOSTS - 1))
    def release(self, i: int) -> None:
        host = self.live(i)
        if host is None or not host.holding:
            return
        flow = release_flow(
            host.intent, host.clock, host.record, host.token, decide=decide_shared_release
        )
        done = self.run(host, flow)
        assert isinstance(done, Released)
        host.holding, host.deadline = False, None
        event("released" + (" after loss" if done.lost_reason else ""))

    @rule(i=st.integers(0, HOSTS - 1))
    def renew(self, i: int) -> None:
        host = self.live(i)
        if host is None or not host.holding or host.token is None:
            return
        if host.deadline is not None and self.mono >= host.deadline:
            host.holding = False  # its renewer would have declared the loss
            return
        flow = renew_flow(
            host.intent, host.clock, host.record, host.token, decide=decide_shared_renew
        )
        try:
            record, _, sent = self.run(host, flow)
        except Exception:
            host.holding = False
            event("renewal found the lock lost")
            return
        duration = host.intent.duration
        assert duration is not None
        host.record = record
        host.deadline = sent + duration.total_seconds() - loss_margin(duration)

    @rule(i=st.integers(0, HOSTS - 1))
    def holder_dies(self, i: int) -> None:
        host = self.live(i)
        if host is not None and host.holding:
            host.dead = True
            event("holder died")

    @precondition(lambda self: any(h.flow is not None and not h.dead for h in self.hosts))
    @rule(i=st.integers(0, HOSTS - 1), cancel=st.booleans())
    def stop_waiting(self, i: int, cancel: bool) -> None:
        host = self.live(i)
        if host is None or host.flow is None:
            return
        host.flow.close()
        host.flow, host.waiting_on = None, None
        if cancel:
            self.leave(host)
            event("waiter cancelled")
        else:
            host.dead = True
            event("waiter died in line")

    # ------------------------------------------------------------ invariants

    @invariant()
    def holders_within_bounds(self) -> None:
        believers = self.believers()
        if self.limit is not None:
            assert len(believers) <= self.limit, [h.intent.instance_id for h in believers]
        if any(h.exclusive for h in believers):
            assert len(believers) == 1, [h.intent.instance_id for h in believers]
        if len(believers) > 1:
            event(f"{len(believers)} holders at once")

    @invariant()
    def the_line_holds_only_hosts_that_joined(self) -> None:
        raw = self.store.raw(NAME)
        if raw is None:
            return
        line = [w.instance_id for w in read_queue(raw[1])]
        assert len(line) == len(set(line))
        for who in line:
            host = next(h for h in self.hosts if h.intent.instance_id == who)
            assert host.dead or host.joined, f"{who} is in line without waiting"

    def teardown(self) -> None:
        """No live waiter starves: holders release, time passes, waiters are woken."""
        waiting = [h for h in self.hosts if h.flow is not None and not h.dead and h.patient]
        before = {h.intent.instance_id: h.acquisitions for h in waiting}
        for _ in range(400):
            if all(h.acquisitions > before[h.intent.instance_id] for h in waiting):
                break
            for host in self.hosts:
                if host.holding and not host.dead:
                    self.release(self.hosts.index(host))
            self.advance(2)
            for i, host in enumerate(self.hosts):
                if host.flow is not None and not host.dead:
                    self.poke(i)
        starved = [
            h.intent.instance_id for h in waiting if h.acquisitions == before[h.intent.instance_id]
        ]
        assert not starved, f"waiters starved: {starved}"


class SemaphoreModel(SharedModel):
    lock_type = SEMAPHORE
    limit = LIMIT
    exclusive_hosts = (0,)


TestSharedModel = SharedModel.TestCase
TestSharedModel.settings = settings(max_examples=400, stateful_step_count=40, deadline=None)
TestSemaphoreModel = SemaphoreModel.TestCase
TestSemaphoreModel.settings = settings(max_examples=400, stateful_step_count=40, deadline=None)


def test_a_waiting_writer_holds_later_readers_back_and_enters_when_the_readers_leave() -> None:
    m = SharedModel()
    m.acquire(2, None)  # h2, shared, holds
    m.acquire(3, None)  # h3 shares it
    assert m.hosts[2].holding and m.hosts[3].holding
    m.acquire(0, None)  # h0, exclusive: joins the line
    m.acquire(4, None)  # h4, shared, lines up behind the writer
    assert m.hosts[0].flow is not None and m.hosts[4].flow is not None
    m.release(2)
    m.poke(0)
    assert m.hosts[0].flow is not None  # h3 still holds
    m.release(3)  # the last reader hands the lock to the writer, alone
    m.poke(0)
    m.poke(4)
    assert m.hosts[0].holding and m.hosts[4].flow is not None
    m.release(0)  # the writer hands it to the reader
    m.poke(4)
    assert m.hosts[4].holding
    m.teardown()


@pytest.mark.parametrize("ready", [2, 3])
def test_a_release_on_a_full_semaphore_admits_exactly_as_many_as_fit(ready: int) -> None:
    m = SemaphoreModel()
    for i in (1, 2, 3):
        m.acquire(i, None)
    assert all(m.hosts[i].holding for i in (1, 2, 3))
    m.acquire(4, None)
    m.acquire(5, None)
    assert m.hosts[4].flow is not None and m.hosts[5].flow is not None
    m.hosts[1].record = m.store.execute(Read(NAME))  # up to date, as the shell keeps it
    writes = m.store.requests["update"]
    m.release(1)  # one slot: h4 only, in the release's own write
    assert m.store.requests["update"] == writes + 1
    m.poke(4)
    m.poke(5)
    assert m.hosts[4].holding and m.hosts[5].flow is not None
    assert m.store.requests["update"] == writes + 1  # the admitted waiter wrote nothing
    m.release(ready)
    m.poke(5)
    assert m.hosts[5].holding
    m.teardown()


@pytest.mark.parametrize("settle", [0.0, 0.02])
def test_a_conflict_pauses_before_reading_again_only_when_settling(settle: float) -> None:
    now = [100.0]
    store = MemoryLocker(monotonic=lambda: now[0])
    intent = SharedIntent(NAME, "h0", timedelta(seconds=30), limit=LIMIT, lock_type=SEMAPHORE)
    clock = store.clock
    taken = run_flow(store, acquire_flow(intent, clock, None, decide=decide_shared_acquire))
    flow = release_flow(
        intent,
        clock,
        taken.record,
        taken.token,
        rng=lambda: 1.0,
        decide=decide_shared_release,
        settle=settle,
    )
    write = next(flow)
    assert isinstance(write, Replace)
    pauses = []
    effect = flow.send(CONFLICT)
    while isinstance(effect, Sleep):  # the shell sleeps; time passes
        pauses.append(effect.until - now[0])
        now[0] = effect.until
        effect = flow.send(None)
    assert isinstance(effect, Read)
    assert pauses == ([pytest.approx(settle)] if settle else [])


def run_flow(store: MemoryLocker, flow: Flow) -> Any:
    value: Any = None
    while True:
        try:
            effect = flow.send(value)
        except StopIteration as stop:
            return stop.value
        value = store.execute(effect)
