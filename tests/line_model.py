"""The harness of the Hypothesis models of waiting in line (tests/unit/test_queue_model.py
for the mutex, tests/unit/test_shared_model.py for shared locks and semaphores).

Hosts run the core's real flows against a Memory store on a shared fake clock
(each host's server-time bounds come from second-truncated Date samples, as in
production). A waiting host's acquire is suspended at its Watch or Sleep and
resumed when the model delivers the change or the time; a change that the core
marks as nothing to that waiter (``Watch.unless``) is not delivered, as the
lockers' watches do not wake it, and neither is a change that does not carry
the view label of a waiter watching by its view (``Watch.view``), until its
``look`` has passed. An acquire started ``slow`` keeps each of its
writes in flight until a ``poke`` lands it, so others may write first (a race
to join, a conflict). Releases, renewals and leaving the line run to the end
at once (a quick look at the watch is answered by the store, which keeps no
watch open: nothing newer, or the newer version).

A run often begins with a busy lock (a holder and a line). A waiter may be
paused: a ``late`` poke sends it the oldest version that wakes it instead of
the newest, and a waiter already handed the lock may stop until about the end
of its claim, read the hand-off then, and have the write it sends held up
while the others go on (one may go past it), before it resumes.

A model defines its hosts and :meth:`LineModel.acquire_flow`,
:meth:`~LineModel.release_flow`, :meth:`~LineModel.renew_flow` and
:meth:`~LineModel.check_acquired`. The rules (acquire, poke, a pause,
advance time, release, renew, a holder dies, a waiter is cancelled or dies), the invariant
that the stored line only holds hosts that joined and did not leave, and the
final check that no live waiter starves are shared.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from lockheed import LockTimeout, MemoryLocker
from lockheed._clock import ServerClock
from lockheed._core import (
    TOKEN_HOLDER_KEY,
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
    loss_margin,
)
from lockheed._queue import read_queue, view_label, view_labels
from lockheed._state import Record

START = 1_764_489_600.0
HOSTS = 6  # the most hosts a model has


def event(what: str) -> None:
    """Count an outcome in Hypothesis's statistics (when a Hypothesis test runs)."""
    with contextlib.suppress(InvalidArgument):
        hypothesis_event(what)


@dataclass
class Host:
    intent: Intent
    clock: ServerClock
    flow: Flow | None = None  # a suspended acquire
    waiting_on: Any = None  # the Watch, Sleep or write in flight it is suspended at
    token: int | None = None
    record: Any = None  # the object as of its last write (what the shell caches)
    before: Any = None  # the version it waited on before it got the lock
    got_at: float = 0.0  # when it got the lock (monotonic)
    deadline: float | None = None  # monotonic loss deadline while it believes it holds
    holding: bool = False
    dead: bool = False
    joined: bool = False
    patient: bool = True  # its acquire waits without a timeout
    slow_writes: bool = False  # its writes wait for the model to land them (races)
    acquisitions: int = 0


class LineModel(RuleBasedStateMachine):
    name = "line"
    hosts: list[Host]

    def __init__(self) -> None:
        super().__init__()
        self.mono = 500.0
        self.true = START
        self.store = MemoryLocker(wall=lambda: self.true, monotonic=lambda: self.mono)
        self.history: list[Record] = []  # every version of the lock, oldest first
        self.released_last: int | None = None  # the host that released last
        self.store.add_listener(self.note_version)

    def peek(self) -> Record | None:
        """The lock's object now, as the model sees it (not a request of a host)."""
        current: Record | None = self.store.execute(Read(self.name))
        self.store.requests["get"] -= 1
        return current

    def note_version(self) -> None:
        current = self.peek()
        if current is not None:
            self.history.append(current)

    def clock(self) -> ServerClock:
        return ServerClock(monotonic=lambda: self.mono, wall=lambda: self.true)

    # ------------------------------------------------------------ the model's flows

    def acquire_flow(self, host: Host, deadline: float | None) -> Flow:
        raise NotImplementedError

    def release_flow(self, host: Host, record: Any, token: int | None) -> Flow:
        """A release (``record`` None, ``token`` None: leaving after a failed acquire)."""
        raise NotImplementedError

    def renew_flow(self, host: Host) -> Flow:
        raise NotImplementedError

    def check_acquired(self, host: Host, got: Acquired) -> None:
        """Check a new holding against the others (before it is recorded)."""
        raise NotImplementedError

    # ------------------------------------------------------------ driving flows

    def sample(self, host: Host) -> None:
        host.clock.observe(math.floor(self.true), self.mono, self.mono)

    def step(self, host: Host, value: Any = None) -> None:
        """Run ``host``'s acquire until it suspends, returns or fails."""
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
            if host.slow_writes and isinstance(effect, (Create, Replace)):
                host.waiting_on = effect  # in flight: others may write first
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
        if self.store.version_of(self.name) == effect.version:
            return False
        current = self.peek()
        if current is None:
            return True
        if not self.in_view(effect, current):
            # Out of view, a waiter watching by its view label reads when its look is due.
            return effect.look is not None and self.mono >= effect.look
        # As the lockers' watches do: sleep on through changes the core says are not ours.
        return effect.unless is None or not effect.unless(current)

    def in_view(self, effect: Watch, record: Record) -> bool:
        """Whether a watch by view label is sent ``record`` (it labels the waiter)."""
        if effect.view is None or effect.quick or record.state is None:
            return True
        owner = record.meta.get(TOKEN_HOLDER_KEY)
        shown = view_labels(record.state.leases, read_queue(record.meta), owner)
        return view_label(effect.view) in shown

    def first_wake(self, effect: Watch) -> Record | None:
        """The oldest version after the one ``effect`` waits on that would wake it: what
        a watch stream delivers first to a waiter that was paused (or read late) while
        the object moved on. None: no such version."""
        after = int(effect.version) if effect.version is not None else 0
        for record in self.history:
            if int(record.version) <= after or not self.in_view(effect, record):
                continue
            if effect.unless is None or not effect.unless(record):
                return record
        return None

    def deliver(self, host: Host) -> Any:
        effect, host.waiting_on = host.waiting_on, None
        if isinstance(effect, (Create, Replace)):
            result = self.store.execute(effect)
            self.sample(host)
            return result
        if isinstance(effect, Sleep):
            return None
        if self.store.version_of(self.name) != effect.version:
            # A change the core marked as not ours arrives when the wait's time is
            # up, as the lockers' watches then return the newest version they skipped.
            result = self.store.execute(Read(self.name))
            self.sample(host)
            return result
        return UNCHANGED

    def believers(self) -> list[Host]:
        """The hosts that believe they hold the lock now (before their loss deadlines)."""
        return [
            h
            for h in self.hosts
            if h.holding and not h.dead and (h.deadline is None or self.mono < h.deadline)
        ]

    def acquired(self, host: Host, got: Acquired) -> None:
        assert isinstance(got, Acquired)
        self.check_acquired(host, got)
        host.holding, host.token, host.record, host.deadline = (
            True,
            got.token,
            got.record,
            got.deadline,
        )
        host.before, host.got_at = got.before, self.mono
        host.joined = False
        host.acquisitions += 1

    def leave(self, host: Host) -> None:
        """What the shell does after a failed acquire: remove its entry (and lease)."""
        done = self.run(host, self.release_flow(host, None, None))
        assert isinstance(done, Released)
        host.joined = False

    def run(self, host: Host, flow: Flow) -> Any:
        value: Any = None
        for _ in range(200):
            try:
                effect = flow.send(value)
            except StopIteration as stop:
                return stop.value
            # A quick watch (after a conflict, or before a release) is answered by
            # the store (it keeps no watch open); nothing else may wait.
            assert not isinstance(effect, Sleep), effect
            assert not isinstance(effect, Watch) or effect.quick, effect
            value = self.store.execute(effect)
            self.sample(host)
        raise AssertionError("a flow ran away")

    def go_past_and_hand_back(self, paused: int, other: int) -> None:
        """Host ``other`` waits until it holds, going past host ``paused`` (whose
        write is on the way); ``paused`` then goes on until it waits again; ``other``
        releases, and ``paused`` waits until it holds."""
        behind, ahead = self.hosts[other], self.hosts[paused]
        while behind.flow is not None:
            self.advance(1)
            self.poke(other)
        assert behind.holding
        for _ in range(50):  # its write lands, and it waits its turn
            if ahead.holding or isinstance(ahead.waiting_on, Watch):
                break
            self.poke(paused)
        self.release(other)
        for _ in range(50):
            if ahead.holding:
                break
            self.advance(1)
            self.poke(paused)
        assert ahead.holding

    # ------------------------------------------------------------ rules

    def live(self, i: int) -> Host | None:
        if i >= len(self.hosts):
            return None
        host = self.hosts[i]
        return None if host.dead else host

    @initialize(order=st.permutations(range(HOSTS)), crowd=st.integers(0, HOSTS))
    def busy_from_the_start(self, order: list[int], crowd: int) -> None:
        """Begin, often, with a busy lock: the first ``crowd`` hosts of ``order``
        ask for it in turn and wait without a timeout."""
        for i in order[:crowd]:
            self.acquire(i, None)
            host = self.live(i)
            if host is not None and host.flow is not None:
                self.poke(i)

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
        host.flow = self.acquire_flow(host, deadline)
        host.joined, host.patient, host.slow_writes = True, deadline is None, slow
        self.step(host)

    @rule(i=st.integers(0, HOSTS - 1), late=st.booleans())
    def poke(self, i: int, late: bool = False) -> None:
        """``late``: a waiting host that was paused (a stopped process, a slow reader)
        is sent the oldest version that wakes it, not the newest: it may act on a
        hand-off whose time has passed while others came and went."""
        host = self.live(i)
        if host is None or host.flow is None:
            return
        effect = host.waiting_on
        if late and isinstance(effect, Watch) and not effect.quick:
            first = self.first_wake(effect)
            newest = self.store.version_of(self.name)
            if first is not None and first.version != newest:
                host.waiting_on = None
                self.sample(host)
                event("a paused waiter is sent an old version")
                self.step(host, first)
                return
        if self.ready(host):
            self.step(host, self.deliver(host))

    def handed_waiters(self) -> list[tuple[Host, datetime]]:
        """Live waiters that the stored object already names as holders (handed the
        lock, not yet told by their watch), with the end of their claim."""
        current = self.peek()
        if current is None or current.state is None:
            return []
        leases = current.state.leases
        handed = []
        for host in self.hosts:
            lease = leases.get(host.intent.instance_id)
            expires = None if lease is None else lease.expires
            if expires is not None and not host.dead and isinstance(host.waiting_on, Watch):
                handed.append((host, expires))
        return handed

    @precondition(lambda self: bool(self.handed_waiters()))
    @rule(
        over=st.sampled_from([-1.0, -0.75, -0.5, -0.25, 0.0, 0.5]),
        others=st.integers(0, 8),
        again=st.booleans(),
    )
    def pause_to_claim_end(self, over: float, others: int, again: bool = False) -> None:
        """A waiter that was handed the lock stops (a paused process) until ``over``
        seconds past the end of its claim, then reads the hand-off; a write it then
        sends stays on the way while (``again``) the host that released last asks
        for the lock again, ``others`` quarters of a second pass and the other
        waiters read the object (one may go past it); then it resumes."""
        host, expires = self.handed_waiters()[0]
        gap = expires.timestamp() + over - self.true
        if gap > 0:
            self.mono += gap
            self.true += gap
        host.slow_writes = True
        event("a waiter handed the lock is paused to the end of its claim")
        self.poke(self.hosts.index(host))
        if again and self.released_last is not None:
            self.acquire(self.released_last, None)
        if others:  # while its write is on the way, the others go on as they may
            self.advance(others)
            for i, other in enumerate(self.hosts):
                if other is not host and other.flow is not None and not other.dead:
                    self.poke(i)
        for _ in range(10):  # then it resumes: its writes land until it waits again
            if not isinstance(host.waiting_on, (Create, Replace)):
                break
            self.poke(self.hosts.index(host))

    @rule(quarters=st.integers(1, 40))
    def advance(self, quarters: int) -> None:
        self.mono += quarters / 4
        self.true += quarters / 4

    @rule(i=st.integers(0, HOSTS - 1))
    def release(self, i: int) -> None:
        host = self.live(i)
        if host is None or not host.holding:
            return
        done = self.run(host, self.release_flow(host, host.record, host.token))
        assert isinstance(done, Released)
        host.holding, host.deadline = False, None
        self.released_last = i
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
            record, _, sent = self.run(host, self.renew_flow(host))
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
    def the_line_holds_only_hosts_that_joined(self) -> None:
        raw = self.store.raw(self.name)
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

    def stored_line(self) -> list[str]:
        raw = self.store.raw(self.name)
        assert raw is not None
        return [w.instance_id for w in read_queue(raw[1])]
