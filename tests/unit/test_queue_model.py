"""A stateful model of fair waiting: hosts that line up, wait, are handed the
lock, release it, give up, and die in line, all through the pure core.

Each host runs the core's real flows against a Memory store on a shared fake
clock (its server-time bounds come from second-truncated Date samples, as in
production); a waiting host's flow is suspended at its Watch or Sleep and
resumed when the model delivers the change or the time (a change the core
marks as nothing to that waiter, ``Watch.unless``, is not delivered, as the
lockers' watches do not wake it). Checked throughout:

* never two hosts that believe they hold the lock (before their own loss
  deadlines) at the same true moment;
* fencing tokens strictly increase with every new holder;
* the stored line only ever holds hosts that joined and did not leave;

and at the end, no live waiter starves: with holders releasing and time
passing, every host still waiting gets the lock, past any dead ones.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hypothesis import event as hypothesis_event
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lockheed import LockTimeout, MemoryLocker
from lockheed._clock import ServerClock
from lockheed._core import (
    UNCHANGED,
    Acquired,
    Create,
    Flow,
    Intent,
    Read,
    Released,
    Replace,
    Sleep,
    Watch,
    acquire_flow,
    release_flow,
    renew_flow,
)
from lockheed._queue import read_queue

NAME = "line"


def event(what: str) -> None:
    """Count an outcome in Hypothesis's statistics (when a Hypothesis test runs)."""
    with contextlib.suppress(InvalidArgument):
        hypothesis_event(what)


START = 1_764_489_600.0
HOSTS = 5


@dataclass
class Host:
    intent: Intent
    clock: ServerClock
    flow: Flow | None = None  # a suspended acquire
    waiting_on: Any = None  # the Watch or Sleep it is suspended at
    token: int | None = None
    record: Any = None
    deadline: float | None = None  # monotonic loss deadline while it believes it holds
    holding: bool = False
    dead: bool = False
    joined: bool = False
    patient: bool = True  # its acquire waits without a timeout
    slow_writes: bool = False  # its writes wait for the model to land them (races)
    acquisitions: int = 0
    seen: list[int] = field(default_factory=list)


class QueueModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.mono = 500.0
        self.true = START
        self.store = MemoryLocker(wall=lambda: self.true, monotonic=lambda: self.mono)
        self.hosts = [
            Host(
                Intent(NAME, f"h{i}", timedelta(seconds=(10, 30, 3, 60, 8)[i])),
                ServerClock(monotonic=lambda: self.mono, wall=lambda: self.true),
            )
            for i in range(HOSTS)
        ]
        self.tokens: list[int] = []

    # ------------------------------------------------------------ driving flows

    def sample(self, host: Host) -> None:
        host.clock.observe(math.floor(self.true), self.mono, self.mono)

    def step(self, host: Host, value: Any = None, error: BaseException | None = None) -> None:
        """Run ``host``'s acquire until it suspends, returns or fails."""
        flow = host.flow
        assert flow is not None
        for _ in range(200):
            try:
                effect = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                host.flow, host.waiting_on = None, None
                self.acquired(host, stop.value)
                return
            except LockTimeout:
                host.flow, host.waiting_on = None, None
                self.leave(host)
                event("acquire timed out: left the line")
                return
            error = None
            if isinstance(effect, (Watch, Sleep)):
                host.waiting_on = effect
                if self.ready(host):
                    value = self.deliver(host)
                    continue
                return
            if host.slow_writes and isinstance(effect, (Create, Replace)):
                host.waiting_on = effect  # in flight: others may write first (land_write)
                return
            value = self.store.execute(effect)
            self.sample(host)
        raise AssertionError(f"{host.intent.instance_id}'s acquire ran away")

    def ready(self, host: Host) -> bool:
        effect = host.waiting_on
        if isinstance(effect, (Create, Replace)):
            return True  # a write in flight lands whenever the model says
        if isinstance(effect, Sleep):
            return self.mono >= effect.until
        assert isinstance(effect, Watch)
        if effect.until is not None and self.mono >= effect.until:
            return True
        if self.store.version_of(NAME) == effect.version:
            return False
        if effect.unless is not None:  # as the lockers' watches do: sleep on through
            current = self.store.execute(Read(NAME))  # changes the core says are not ours
            self.store.requests["get"] -= 1
            return current is None or not effect.unless(current)
        return True

    def deliver(self, host: Host) -> Any:
        effect, host.waiting_on = host.waiting_on, None
        if isinstance(effect, (Create, Replace)):
            result = self.store.execute(effect)
            self.sample(host)
            return result
        if isinstance(effect, Sleep):
            return None
        if self.store.version_of(NAME) != effect.version:
            result = self.store.execute(Read(NAME))
            self.sample(host)
            # A change the core marked as not ours arrives when the wait's time is
            # up, as the lockers' watches then return the newest version they skipped.
            return result
        return UNCHANGED

    def acquired(self, host: Host, got: Acquired) -> None:
        assert isinstance(got, Acquired)
        self.check_alone(host, got)
        if self.tokens and got.token == self.tokens[-1] == host.token:
            event("took its own lease back: the same token")  # nobody held it in between
        else:
            assert all(got.token > t for t in self.tokens), (got.token, self.tokens)
            self.tokens.append(got.token)
        host.holding, host.token, host.record, host.deadline = (
            True,
            got.token,
            got.record,
            got.deadline,
        )
        host.joined = False
        host.acquisitions += 1
        event("handed over in line" if got.handed else "took the lock")

    def check_alone(self, host: Host, got: Acquired) -> None:
        for other in self.hosts:
            if other is host or not other.holding or other.dead:
                continue
            believes = other.deadline is None or self.mono < other.deadline
            assert not believes, (
                f"{host.intent.instance_id} acquired while {other.intent.instance_id} holds"
            )

    def leave(self, host: Host) -> None:
        """What the shell does after a failed acquire: remove its entry (and lease)."""
        done = self.run(host, release_flow(host.intent, host.clock, None, None))
        assert isinstance(done, Released)
        host.joined = False

    def run(self, host: Host, flow: Flow) -> Any:
        value: Any = None
        for _ in range(200):
            try:
                effect = flow.send(value)
            except StopIteration as stop:
                return stop.value
            # A quick watch (after a conflict) is answered by the store (UNCHANGED:
            # it keeps no watch open) and the flow reads; nothing else may wait.
            assert not isinstance(effect, Sleep), effect
            assert not isinstance(effect, Watch) or effect.quick, effect
            value = self.store.execute(effect)
            self.sample(host)
        raise AssertionError("a flow ran away")

    # ------------------------------------------------------------ rules

    def live(self, i: int) -> Host | None:
        host = self.hosts[i]
        return None if host.dead else host

    @rule(
        i=st.integers(0, HOSTS - 1),
        patience=st.sampled_from([None, 0.0, 2.0, 20.0]),
        slow=st.booleans(),
    )
    def acquire(self, i: int, patience: float | None, slow: bool = False) -> None:
        """``slow``: each write of this acquire is in flight until ``poke`` lands it,
        so others may write first (a race to join, a conflict)."""
        host = self.live(i)
        if host is None or host.flow is not None or host.holding:
            return
        self.sample(host)
        deadline = None if patience is None else self.mono + patience
        host.flow = acquire_flow(host.intent, host.clock, deadline, rng=lambda: 0.5)
        host.joined, host.patient, host.slow_writes = True, deadline is None, slow
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
        done = self.run(host, release_flow(host.intent, host.clock, host.record, host.token))
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
        try:
            record, _, sent = self.run(
                host, renew_flow(host.intent, host.clock, host.record, host.token)
            )
        except Exception:
            host.holding = False
            event("renewal found the lock lost")
            return
        assert host.intent.duration is not None
        host.record = record
        host.deadline = (
            sent
            + host.intent.duration.total_seconds()
            - min(2.0, host.intent.duration.total_seconds() / 10)
        )

    @rule(i=st.integers(0, HOSTS - 1))
    def holder_dies(self, i: int) -> None:
        host = self.live(i)
        if host is not None and host.holding:
            host.dead = True
            event("holder died")

    @precondition(lambda self: any(h.flow is not None and not h.dead for h in self.hosts))
    @rule(i=st.integers(0, HOSTS - 1), cancel=st.booleans())
    def stop_waiting(self, i: int, cancel: bool) -> None:
        """A waiter is cancelled (it leaves the line) or killed (its entry stays)."""
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
    def never_two_holders(self) -> None:
        believers = [
            h.intent.instance_id
            for h in self.hosts
            if h.holding and not h.dead and (h.deadline is None or self.mono < h.deadline)
        ]
        assert len(believers) <= 1, believers

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


TestQueueModel = QueueModel.TestCase
TestQueueModel.settings = settings(max_examples=500, stateful_step_count=40, deadline=None)


def test_an_unclaimed_hand_off_passes_to_the_next_only_after_the_first_stops_believing() -> None:
    """The model's rules in a fixed order: a waiter that is handed the lock and never
    claims it (it hangs) gives way to the next in line within the claim window."""
    m = QueueModel()
    m.acquire(0, None)  # h0 holds
    m.acquire(1, None)  # h1 joins the line
    m.acquire(2, None)  # h2 joins behind it
    h0, h1, h2 = m.hosts[:3]
    assert h0.holding and h1.flow is not None and h2.flow is not None
    m.release(0)  # hands the lock to h1 in the same write
    m.poke(1)
    assert h1.holding and h1.deadline is not None
    handed_at = m.mono
    m.poke(2)
    assert h2.flow is not None  # still waiting: h1 holds
    while h2.flow is not None:  # h1 never renews; time passes
        m.advance(1)
        m.poke(2)
    assert h2.holding and (h2.token or 0) > (h1.token or 0)
    assert m.mono >= h1.deadline  # h1 had stopped believing before h2 got it
    assert m.mono - handed_at <= 5 + 2  # the claim window, plus clock resolution
    m.never_two_holders()
    m.teardown()


def stored_line(m: QueueModel) -> list[str]:
    raw = m.store.raw(NAME)
    assert raw is not None
    return [w.instance_id for w in read_queue(raw[1])]


def test_a_contender_that_loses_the_race_to_join_keeps_its_turn() -> None:
    """h1 began to ask before h2, but h2's join landed first: h1's join meets a
    conflict, and h1 joins ahead of h2, so it is served first."""
    m = QueueModel()
    m.acquire(0, None)  # h0 holds
    h1, h2 = m.hosts[1:3]
    m.acquire(1, None, slow=True)  # h1 has read; its join is in flight
    assert isinstance(h1.waiting_on, Replace)
    m.renew(0)  # the object moves on before h2 begins to ask
    m.acquire(2, None)  # h2 reads and joins: its write lands first
    assert stored_line(m) == ["h2"]
    m.poke(1)  # h1's join lands: a conflict (h2 joined); it pauses, reads, joins again
    for _ in range(50):
        if "h1" in stored_line(m):
            break
        m.advance(1)
        m.poke(1)
    assert stored_line(m) == ["h1", "h2"]
    m.release(0)  # the hand-off goes to h1
    m.poke(1)
    m.poke(2)
    assert h1.holding and not h2.holding
    m.never_two_holders()
    m.teardown()
