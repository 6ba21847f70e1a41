"""A stateful model of several hosts sharing one lock through the pure core.

Four instances (each on its own host, with its own clock error and round trip)
acquire, renew and release one lock in a Memory store, while time advances,
leases expire, a conflicting writer bumps the object's version between a read
and a write, the object is deleted or created the way Go creates it, and one
instance forces takeovers by a tag. Every outcome is checked against a small
model, and the safety properties are checked on the server's true time:

* never two live holders, unless a force condition allowed the takeover;
* fencing tokens strictly increase with every acquisition;
* only the owner's release removes its lease;
* a renew after another instance took over raises LockLost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lockheed import LockLost, LockTimeout, MemoryLocker
from lockheed._clock import ServerClock
from lockheed._conditions import LockView, tags_contain
from lockheed._core import (
    CONFLICT,
    TOKEN_HOLDER_KEY,
    TOKEN_KEY,
    Acquired,
    Create,
    Effect,
    Flow,
    Intent,
    Read,
    Released,
    Replace,
    Watch,
    acquire_flow,
    release_flow,
    renew_flow,
)
from lockheed._state import NEVER, Record, decode_state

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NAME = "shared"
START = 1_764_140_400.0  # the server's true time at the start (2025-11-26T07:00:00Z)
GO_CREATED = '{"name":"shared","lockType":"","leases":null}'


def utc(epoch: float) -> datetime:
    return EPOCH + timedelta(seconds=epoch)


@dataclass
class Host:
    """One instance on its own host: its intent, clock error and what it believes."""

    intent: Intent
    wall_error: float  # its wall clock minus the server's
    mono_offset: float  # its monotonic clock minus the shared fake one
    rtt: float  # round trip of its requests
    stamp_at: float = 1.0  # where in the round trip the server stamps its Date (0: at once)
    clock: ServerClock = field(init=False)
    sampled: bool = False
    record: Record | None = None  # the record of its last operation, reused by renew/release
    token: int | None = None
    expires: datetime | None = None  # set while it believes it holds the lock
    ousted: bool = False  # another instance acquired (or the object went) since it did


@dataclass
class Model:
    leases: dict[str, datetime]
    tags: tuple[str, ...]


HOSTS = [
    # instance, duration (s; None: never expires), tags, reset_tags, force tag,
    # wall error, monotonic offset, round trip
    ("a", 10.0, ("a",), False, None, 0.0, 0.0, 0.0),
    ("b", 30.0, ("b",), True, None, 600.0, 5000.0, 0.5),
    ("c", None, ("c",), False, None, -600.0, -90.0, 2.0),
    ("d", 5.0, ("d",), False, "c", 3.75, 17.25, 0.25),
]


def sync_tags(stored: tuple[str, ...], intent: Intent) -> tuple[str, ...]:
    out: list[str] = [] if intent.reset_tags else list(dict.fromkeys(stored))
    out.extend(t for t in intent.tags if t not in out)
    return tuple(out)


class LockModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.mono = 1000.0
        self.true = START
        self.locker = MemoryLocker(wall=lambda: self.true, monotonic=lambda: self.mono)
        self.hosts: list[Host] = []
        for instance, duration, tags, reset, force, wall_error, offset, rtt in HOSTS:
            length = None if duration is None else timedelta(seconds=duration)
            cond = None if force is None else tags_contain(force)
            me = Intent(NAME, instance, length, tags, reset, cond, fair=False)  # racing
            host = Host(me, wall_error, offset, rtt)
            host.clock = self._clock(host)
            self.hosts.append(host)
        self.model: Model | None = None  # None: the object does not exist
        self.tokens: list[int] = []

    # ------------------------------------------------------------ time and I/O

    def _clock(self, host: Host) -> ServerClock:
        return ServerClock(
            monotonic=lambda: self.mono + host.mono_offset,
            wall=lambda: self.true + host.wall_error,
        )

    def now(self) -> datetime:
        return utc(self.true)

    def sample(self, host: Host) -> None:
        """A response reached ``host`` now, for a request sent one round trip ago;
        the server stamped its Date header (whole seconds) somewhere in between."""
        received = self.mono + host.mono_offset
        stamped = self.true - (1 - host.stamp_at) * host.rtt
        host.clock.observe(math.floor(stamped), received - host.rtt, received)
        host.sampled = True

    def bump(self, effect: Effect) -> None:
        """The conflicting writer, acting between the flow's read and its write."""
        if isinstance(effect, Create):
            self.locker.put_raw(NAME, GO_CREATED)  # Go got there first
            return
        current = self.locker.execute(Read(NAME))
        if isinstance(current, Record):
            assert current.state is not None
            result = self.locker.execute(Replace(NAME, current.version, current.state, {}, current))
            assert result is not CONFLICT

    def drive(self, host: Host, flow: Flow, interfere: bool) -> Any:
        result: Any = None
        for _ in range(50):
            try:
                effect = flow.send(result)
            except StopIteration as stop:
                return stop.value
            # A quick watch (after a conflict) answers from an open watch, which a
            # Memory store never has: it returns UNCHANGED and the flow reads.
            waits = isinstance(effect, Watch) and not effect.quick
            assert not waits, f"{host.intent.instance_id} would wait: {effect}"
            if interfere and isinstance(effect, Create | Replace):
                interfere = False
                self.bump(effect)
            result = self.locker.execute(effect)
            self.sample(host)
        raise AssertionError("a flow did not finish")

    def attempt(self, host: Host, flow: Flow, interfere: bool, expected: type[Exception]) -> Any:
        """Drive the flow; return its result, or the ``expected`` error it raised."""
        try:
            return self.drive(host, flow, interfere)
        except expected as exc:
            return exc

    def bounds(self, host: Host) -> tuple[datetime, datetime]:
        self.sample(host)
        return host.clock.bounds()

    def live_others(self, host: Host, earliest: datetime) -> list[str]:
        assert self.model is not None
        me = host.intent.instance_id
        return [i for i, e in self.model.leases.items() if i != me and e > earliest]

    # ------------------------------------------------------------ rules

    @initialize(
        networks=st.lists(
            st.tuples(
                st.integers(0, 12).map(lambda n: n / 4),  # round trip
                st.sampled_from([0.0, 0.5, 1.0]),  # where the Date is stamped
                st.sampled_from([0.0, 3.75, 600.0, -600.0]),  # wall clock error
            ),
            min_size=len(HOSTS),
            max_size=len(HOSTS),
        ),
        go_created=st.booleans(),
    )
    def start(self, networks: list[tuple[float, float, float]], go_created: bool) -> None:
        for host, (rtt, stamp_at, wall_error) in zip(self.hosts, networks, strict=True):
            host.rtt, host.stamp_at, host.wall_error = rtt, stamp_at, wall_error
        if go_created:
            self.go_create()

    @rule(quarters=st.integers(1, 60))
    def advance(self, quarters: int) -> None:
        self.mono += quarters / 4
        self.true += quarters / 4

    @precondition(
        lambda self: self.model is not None and any(e < NEVER for e in self.model.leases.values())
    )
    @rule(extra=st.integers(0, 8))
    def expire(self, extra: int) -> None:
        """Move time past every lease that can expire."""
        assert self.model is not None
        last = max(e for e in self.model.leases.values() if e < NEVER)
        step = max(0.0, (last - self.now()).total_seconds()) + 0.25 + extra / 4
        self.mono += step
        self.true += step

    @precondition(
        lambda self: (
            self.model is not None
            and any(self.now() < e < NEVER for e in self.model.leases.values())
        )
    )
    @rule(quarters=st.integers(0, 8))
    def approach(self, quarters: int) -> None:
        """Move time to just before (or exactly at) the expiry of the live lease."""
        assert self.model is not None
        expiry = min(e for e in self.model.leases.values() if self.now() < e)
        step = max(0.0, (expiry - self.now()).total_seconds() - quarters / 4)
        self.mono += step
        self.true += step

    def pick(self, holder: bool, index: int) -> Host:
        """The instance holding the lock (when asked for and there is one), else ``index``'s."""
        if holder and self.model is not None and self.model.leases:
            owner = next(iter(self.model.leases))
            return next(h for h in self.hosts if h.intent.instance_id == owner)
        return self.hosts[index]

    @rule(index=st.integers(0, len(HOSTS) - 1), interfere=st.booleans())
    def acquire(self, index: int, interfere: bool) -> None:
        host = self.hosts[index]
        me = host.intent.instance_id
        earliest, latest = self.bounds(host)
        others: list[str] = []
        forced = False
        if self.model is not None:
            others = self.live_others(host, earliest)
            live = any(e > earliest for e in self.model.leases.values())
            view = LockView(frozenset(self.model.tags), live)
            forced = host.intent.force is not None and host.intent.force.matches(view)
        holding = host.token if host.expires is not None and not host.ousted else None
        flow = acquire_flow(host.intent, host.clock, host.clock.monotonic(), token=holding)
        got = self.attempt(host, flow, interfere, LockTimeout)
        if isinstance(got, LockTimeout):
            exc = got
            assert others, f"{me} timed out on a free lock"
            assert not forced, f"{me} was refused a forced takeover"
            assert self.model is not None
            assert exc.holder == others[0]
            assert exc.expires == self.model.leases[others[0]]
            event("acquire: busy")
            return
        assert isinstance(got, Acquired)
        # Fencing: every acquisition's token is larger than all before it, and it
        # is stored with the lock, so a listing shows the holder's current token.
        assert got.token < int(got.record.version)
        assert got.record.meta.get(TOKEN_KEY) == str(got.token)
        assert got.record.meta.get(TOKEN_HOLDER_KEY) == me
        mine = self.model is not None and me in self.model.leases
        if holding is not None and mine and not others:
            assert got.token == holding  # taken again while held: no hand-off, same token
        else:
            assert all(got.token > t for t in self.tokens)
            self.tokens.append(got.token)
        # Safety on the server's true time: nobody else still holds a live lease,
        # unless the force condition allowed taking it.
        for other in self.hosts:
            if other is host or other.expires is None or other.ousted:
                continue
            if other.expires > self.now():
                assert forced, f"{me} took the live lease of {other.intent.instance_id}"
                event("acquire: forced takeover")
            else:
                event("acquire: took over an expired lease")
            other.ousted = True
        assert not others or forced, f"{me} acquired while {others} held the lock"
        expected = host.intent.expiry(latest)
        assert got.expires == expected  # from the latest possible server time
        tags = sync_tags(() if self.model is None else self.model.tags, host.intent)
        self.model = Model({me: expected}, tags)
        host.record, host.token, host.expires, host.ousted = got.record, got.token, expected, False

    @precondition(lambda self: any(h.token is not None for h in self.hosts))
    @rule(holder=st.booleans(), index=st.integers(0, len(HOSTS) - 1), interfere=st.booleans())
    def renew(self, holder: bool, index: int, interfere: bool) -> None:
        host = self.pick(holder, index)
        if host.token is None:
            return
        me = host.intent.instance_id
        earliest, latest = self.bounds(host)
        flow = renew_flow(host.intent, host.clock, host.record, host.token)
        ours = None if self.model is None else self.model.leases.get(me)
        # A renewal refused from the cached record names the holder of that record.
        cached = host.record.state if host.record is not None else None
        seen = [] if cached is None else [le.instance_id for le in cached.live_leases(earliest)]
        outcome = self.attempt(host, flow, interfere, LockLost)
        if isinstance(outcome, LockLost):
            exc = outcome
            assert ours is None or ours <= earliest, f"{me} lost a live lease"
            live = [] if self.model is None else self.live_others(host, earliest)
            assert exc.holder in (None, *live, *seen)
            event("renew: lost")
            host.expires = None
            return
        rec, expires, _ = outcome
        assert not host.ousted, f"{me} renewed after another instance took over"
        assert ours is not None and ours > earliest, f"{me} renewed a lease it did not hold"
        assert isinstance(rec, Record)
        assert expires == host.intent.expiry(latest)
        assert self.model is not None
        self.model.leases[me] = expires
        host.record, host.expires = rec, expires
        event("renew: ok")

    @rule(holder=st.booleans(), index=st.integers(0, len(HOSTS) - 1), interfere=st.booleans())
    def release(self, holder: bool, index: int, interfere: bool) -> None:
        host = self.pick(holder, index)
        me = host.intent.instance_id
        self.bounds(host)
        before = self.locker.raw(NAME)
        flow = release_flow(host.intent, host.clock, host.record, host.token)
        done = self.drive(host, flow, interfere)
        assert isinstance(done, Released)
        # Only the owner's lease may go; every other lease stays exactly as it was.
        if self.model is not None:
            after = self.locker.raw(NAME)
            assert after is not None
            left = {i: le.expires for i, le in decode_state(after[0]).leases.items()}
            assert left == {i: e for i, e in self.model.leases.items() if i != me}
        host.expires = None
        if done.record is not None:
            host.record = done.record
        if self.model is not None and me in self.model.leases:
            assert done.lost_reason is None
            event("release: removed")
            del self.model.leases[me]
            self.model.tags = sync_tags(self.model.tags, host.intent)
        else:
            assert done.lost_reason is not None
            event("release: nothing to remove")
            if not interfere:
                assert self.locker.raw(NAME) == before  # nothing written at all

    @rule()
    def delete(self) -> None:
        self.locker.delete(NAME)
        self.model = None
        for host in self.hosts:
            if host.expires is not None:
                host.ousted = True

    @precondition(lambda self: self.model is None)
    @rule()
    def go_create(self) -> None:
        """Go's acquire creates the object empty first."""
        self.locker.put_raw(NAME, GO_CREATED)
        self.model = Model({}, ())

    # ------------------------------------------------------------ invariants

    @invariant()
    def store_matches_model(self) -> None:
        raw = self.locker.raw(NAME)
        if self.model is None:
            assert raw is None
            return
        assert raw is not None
        state = decode_state(raw[0])
        assert state.lock_type == "mutex"
        assert dict(state.leases) == {i: state.leases[i] for i in self.model.leases}
        assert {i: le.expires for i, le in state.leases.items()} == self.model.leases
        assert state.tags == self.model.tags
        assert len(state.leases) <= 1

    @invariant()
    def at_most_one_live_holder(self) -> None:
        now = self.now()
        holders = [
            h for h in self.hosts if h.expires is not None and not h.ousted and h.expires > now
        ]
        assert len(holders) <= 1, [h.intent.instance_id for h in holders]
        for h in holders:
            assert self.model is not None
            assert self.model.leases.get(h.intent.instance_id) == h.expires

    @invariant()
    def clocks_bound_the_true_time(self) -> None:
        for host in self.hosts:
            if host.sampled:
                earliest, latest = host.clock.bounds()
                assert earliest <= self.now() <= latest


LockModel.TestCase.settings = settings(
    max_examples=200, stateful_step_count=30, deadline=None, derandomize=False
)
TestLockModel = LockModel.TestCase
