"""The pure core: every locking decision, and no I/O.

Given what is stored, what this instance wants and the server's time, the
``decide_*`` functions say what to do: create the object, replace it at a
given resourceVersion, wait until a time (or a change), or refuse. The
``*_flow`` generators run those decisions to completion as sans-I/O protocols:
they *yield* effects (:class:`Read`, :class:`Create`, :class:`Replace`,
:class:`Watch`) and receive their results, so the sync and asyncio shells only
perform requests and never decide anything themselves.

Failure semantics:

* Every write is conditional on the resourceVersion read; a conflict re-reads
  and decides again. No decision ever drops another instance's live lease,
  unless the force condition matches the stored state.
* A lease is judged expired only once the *earliest* possible server time has
  passed its expiry; a holder writes expiry from the *latest* possible server
  time. Clock skew between hosts therefore never lets a contender steal a live
  lease (see :mod:`lockheed._clock`).
* Go lockheed's ``reserved/*`` annotations of another instance make an
  acquire wait for the change or the reservation's expiry. Renewal and
  release of our own live lease go through (still conditional on the
  resourceVersion), so a stale Go reservation cannot cost a holder its lock.
* A malformed stored document is never overwritten unless forced.
* Renewal fails with :class:`LockLost` when our lease is gone, expired, or the
  object deleted; release after a loss leaves the new holder's lease alone.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from ._clock import ServerClock
from ._conditions import Condition, LockView
from ._errors import LockConflict, LockLost, LockStateError, LockTimeout
from ._state import MUTEX, NEVER, Lease, LockState, Record, StateFormatError, parse_time

__all__ = [
    "Acquired",
    "Create",
    "Effect",
    "Intent",
    "Read",
    "Released",
    "Replace",
    "Watch",
    "acquire_flow",
    "decide_acquire",
    "decide_release",
    "decide_renew",
    "release_flow",
    "renew_flow",
]

RESERVED_BY: Final = "reserved/by"
RESERVED_EXPIRES: Final = "reserved/expires"
TOKEN_KEY: Final = "lockheed/fencing-token"  # noqa: S105 - an annotation key
TOKEN_HOLDER_KEY: Final = "lockheed/fencing-holder"  # noqa: S105
# Consecutive write conflicts an operation without a deadline tolerates.
MAX_CONFLICTS: Final = 100


@dataclass(frozen=True)
class Intent:
    """What one lock instance asks for."""

    name: str
    instance_id: str
    duration: timedelta | None = None  # None: the lease never expires
    tags: tuple[str, ...] = ()
    reset_tags: bool = False
    force: Condition | None = None

    def expiry(self, latest_now: datetime) -> datetime:
        if self.duration is None or self.duration >= NEVER - latest_now:
            return NEVER
        return latest_now + self.duration


# ---------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Write:
    """Create (``version`` None) or replace at ``version`` with this state."""

    version: str | None
    state: LockState
    meta: Mapping[str, str | None] = field(default_factory=dict)  # None removes a key
    expires: datetime | None = None  # our lease's expiry, when we hold it after


@dataclass(frozen=True)
class Wait:
    """Not now: wait for a change of the object, or until the server's time ``until``."""

    until: datetime | None  # None: only a change can help (a lease that never expires)
    holder: str | None
    expires: datetime | None
    reason: str


@dataclass(frozen=True)
class Refuse:
    error: Exception


@dataclass(frozen=True)
class Nothing:
    """Nothing to write; ``reason`` says why (for release of a lease that is gone)."""

    reason: str


Decision = Write | Wait | Refuse | Nothing


def _reservation(record: Record, me: str, earliest: datetime) -> Wait | None:
    by = record.meta.get(RESERVED_BY)
    if not by or by == me:
        return None
    try:
        until = parse_time(record.meta.get(RESERVED_EXPIRES, ""))
    except StateFormatError:
        return None  # an unreadable reservation protects nothing Go can honour either
    if until <= earliest:
        return None
    return Wait(until, by, until, "reserved")


def _sync_tags(stored: tuple[str, ...], requested: tuple[str, ...], reset: bool) -> tuple[str, ...]:
    base = () if reset else stored
    return tuple(dict.fromkeys((*base, *requested)))


def _view(record: Record, earliest: datetime) -> LockView:
    if record.state is None:  # unreadable: assume the worst, that someone holds it
        return LockView(frozenset(), True)
    return LockView(frozenset(record.state.tags), bool(record.state.live_leases(earliest)))


def _token_meta(me: str, token: int | None) -> dict[str, str | None]:
    if token is None:
        return {}
    return {TOKEN_KEY: str(token), TOKEN_HOLDER_KEY: me}


def _forced(intent: Intent, record: Record, earliest: datetime) -> bool:
    return intent.force is not None and intent.force.matches(_view(record, earliest))


def decide_acquire(
    intent: Intent, record: Record | None, earliest: datetime, latest: datetime
) -> Decision:
    """Decide an acquire; ``earliest``/``latest`` bound the server's time now."""
    me = intent.instance_id
    expires = intent.expiry(latest)
    mine = Lease(me, expires)
    if record is None:
        fresh = LockState(intent.name, MUTEX, tags=_sync_tags((), intent.tags, intent.reset_tags))
        return Write(None, fresh.with_leases([mine]), expires=expires)
    busy = _reservation(record, me, earliest)
    if busy is not None:
        return busy
    forced = _forced(intent, record, earliest)
    state: LockState | None = record.state
    if state is None or state.lock_type != MUTEX:
        if not forced:
            why = record.error if state is None else f"lock type {state.lock_type!r}"
            return Refuse(LockStateError(f"lock {intent.name!r}: {why}", lock=intent.name))
        state = LockState(intent.name, MUTEX)
    live = state.live_leases(earliest)
    others = [le for le in live if le.instance_id != me]
    if others and not forced:
        if len(live) > 1:
            ids = ", ".join(sorted(le.instance_id for le in live))
            return Refuse(
                LockStateError(
                    f"mutex {intent.name!r} has several live leases: {ids}", lock=intent.name
                )
            )
        holder = others[0]
        until = None if holder.expires >= NEVER else holder.expires
        return Wait(until, holder.instance_id, holder.expires, "held")
    tags = _sync_tags(state.tags, intent.tags, intent.reset_tags)
    new = replace(state, name=intent.name, lock_type=MUTEX, tags=tags).with_leases([mine])
    return Write(record.version, new, expires=expires)


def decide_renew(
    intent: Intent, record: Record | None, earliest: datetime, latest: datetime, token: int | None
) -> Decision:
    """Move our lease's expiry forward, or refuse with :class:`LockLost`."""
    me, name = intent.instance_id, intent.name
    if record is None:
        return Refuse(LockLost(f"lock {name!r}: its object was deleted", lock=name))
    state = record.state
    if state is None:
        return Refuse(LockLost(f"lock {name!r}: stored state became unreadable", lock=name))
    lease = state.leases.get(me)
    holders = [le.instance_id for le in state.live_leases(earliest) if le.instance_id != me]
    if lease is None or not lease.live(earliest) or holders:  # a mutex: another live lease
        holder = holders[0] if holders else None
        why = f"taken over by {holder}" if holder else "our lease expired or was removed"
        return Refuse(LockLost(f"lock {name!r}: {why}", lock=name, holder=holder))
    expires = intent.expiry(latest)
    new = state.with_leases(
        [*(le for le in state.leases.values() if le.instance_id != me), Lease(me, expires)]
    )
    return Write(record.version, new, _token_meta(me, token), expires=expires)


def decide_release(
    intent: Intent, record: Record | None, earliest: datetime, token: int | None
) -> Decision:
    """Remove our lease (and nothing else), syncing tags as Go does."""
    me = intent.instance_id
    if record is None:
        return Nothing("its object was deleted")
    state = record.state
    if state is None:
        return Nothing("stored state is unreadable")
    if me not in state.leases:
        holders = [le.instance_id for le in state.live_leases(earliest)]
        return Nothing(f"taken over by {holders[0]}" if holders else "our lease was removed")
    rest = [le for le in state.leases.values() if le.instance_id != me]
    tags = _sync_tags(state.tags, intent.tags, intent.reset_tags)
    meta = _token_meta(me, token)
    return Write(record.version, replace(state, tags=tags).with_leases(rest), meta)


# ------------------------------------------------------------------ effects


@dataclass(frozen=True)
class Read:
    """GET the object; the result is a :class:`Record`, or None if it does not exist."""

    name: str


@dataclass(frozen=True)
class Create:
    """Create the object; the result is the new Record, or :data:`CONFLICT` if it exists."""

    name: str
    state: LockState
    meta: Mapping[str, str | None]


@dataclass(frozen=True)
class Replace:
    """Write at ``version``; the result is the new Record, :data:`CONFLICT`, or None
    when the object no longer exists."""

    name: str
    version: str
    state: LockState
    meta: Mapping[str, str | None]
    base: Record


@dataclass(frozen=True)
class Watch:
    """Wait for a change after ``version`` until monotonic time ``until`` (None: no
    limit). The result is the changed Record, None if deleted, or :data:`UNCHANGED`."""

    name: str
    version: str | None
    until: float | None


Effect = Read | Create | Replace | Watch


class _Sentinel:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


CONFLICT: Final = _Sentinel("CONFLICT")
UNCHANGED: Final = _Sentinel("UNCHANGED")

Flow = Generator[Effect, Any, Any]


@dataclass(frozen=True)
class Acquired:
    record: Record
    token: int
    expires: datetime
    sent: float  # monotonic time the winning write was sent


@dataclass(frozen=True)
class Released:
    record: Record | None
    lost_reason: str | None  # set when there was no lease of ours to remove


def token_of(record: Record) -> int:
    """Fencing token of the write that produced ``record``: its resourceVersion.

    resourceVersions are etcd revisions, which strictly increase with every
    write in the cluster (Kubernetes 1.35 documents them as comparable
    integers), so any hand-off, including one by Go lockheed or one that
    deleted and re-created the object, yields a larger token.
    """
    try:
        return int(record.version)
    except ValueError:
        raise LockStateError(
            f"resourceVersion {record.version!r} is not an integer; "
            "fencing tokens need etcd-backed storage",
            lock=record.name,
        ) from None


def _write_effect(name: str, record: Record | None, decision: Write) -> Effect:
    if decision.version is None or record is None:
        return Create(name, decision.state, decision.meta)
    return Replace(name, decision.version, decision.state, decision.meta, record)


def _written_expiry(record: Record, me: str, planned: datetime | None) -> datetime | None:
    """Our lease's expiry as the written object carries it, which is how every reader
    judges it (a Lease rounds it to its server stamp and whole seconds); ``planned``
    when the object does not say."""
    lease = record.state.leases.get(me) if record.state is not None else None
    return planned if lease is None else lease.expires


def _wait_until(clock: ServerClock, wait: Wait, deadline: float | None) -> float | None:
    if wait.until is None:
        return deadline
    at = clock.monotonic_at(wait.until) + 0.001
    return at if deadline is None else min(at, deadline)


def _timed_out(clock: ServerClock, deadline: float | None) -> bool:
    return deadline is not None and clock.monotonic() >= deadline


def acquire_flow(
    intent: Intent,
    clock: ServerClock,
    deadline: float | None,
    cached: Record | None = None,
) -> Flow:
    """Acquire, waiting (by watch) until ``deadline`` (monotonic; None = forever).

    With the ``cached`` object this instance last wrote (a lock acquired again
    by the same instance), the first write goes out without a read; if someone
    wrote since, it meets a conflict, and the flow reads and decides again.
    """
    record = cached
    if record is None:
        record = yield Read(intent.name)
    conflicts = late = 0
    while True:
        earliest, latest = clock.bounds()
        decision = decide_acquire(intent, record, earliest, latest)
        if isinstance(decision, Refuse):
            raise decision.error
        if isinstance(decision, Write):
            sent = clock.monotonic()
            result = yield _write_effect(intent.name, record, decision)
            if isinstance(result, Record):
                expires = _written_expiry(result, intent.instance_id, decision.expires)
                assert expires is not None
                return Acquired(result, token_of(result), expires, sent)
            conflicts += 1
            if deadline is None and conflicts > MAX_CONFLICTS:
                raise LockConflict(
                    f"lock {intent.name!r}: too many write conflicts", lock=intent.name
                )
            late += _timed_out(clock, deadline)
            if late > 1:  # one more try after the deadline, as a non-blocking acquire gets
                raise LockTimeout(
                    f"lock {intent.name!r}: other writers kept changing it until the timeout",
                    lock=intent.name,
                )
            record = yield Read(intent.name)
            continue
        assert isinstance(decision, Wait)
        if _timed_out(clock, deadline):
            raise LockTimeout(
                f"lock {intent.name!r} is {decision.reason} by {decision.holder}"
                + (f" until {decision.expires.isoformat()}" if decision.expires else ""),
                lock=intent.name,
                holder=decision.holder,
                expires=decision.expires,
            )
        result = yield Watch(
            intent.name, record.version if record else None, _wait_until(clock, decision, deadline)
        )
        if result is not UNCHANGED:
            record = result


def renew_flow(intent: Intent, clock: ServerClock, record: Record | None, token: int) -> Flow:
    """Renew from the cached ``record`` (one PUT when nobody else wrote).

    Returns ``(record, expires, sent)``; raises :class:`LockLost`. A Go
    reservation does not hold up the renewal of our own live lease: the write
    is conditional on the resourceVersion, so it cannot disturb a writer whose
    update is still to come (that update fails instead), while waiting could
    cost us the lock (a Go instance whose renewal failed keeps reserving).
    """
    fresh = record is None
    if record is None:
        record = yield Read(intent.name)
    conflicts = 0
    while True:
        earliest, latest = clock.bounds()
        decision = decide_renew(intent, record, earliest, latest, token)
        if isinstance(decision, Refuse):
            if not fresh:  # judged from our cached copy: read once to name the new holder
                fresh = True
                record = yield Read(intent.name)
                continue
            raise decision.error
        assert isinstance(decision, Write)
        sent = clock.monotonic()
        result = yield _write_effect(intent.name, record, decision)
        if isinstance(result, Record):
            return result, _written_expiry(result, intent.instance_id, decision.expires), sent
        if result is None:
            raise LockLost(f"lock {intent.name!r}: its object was deleted", lock=intent.name)
        conflicts = _count_conflict(intent, conflicts)
        record = yield Read(intent.name)


def release_flow(
    intent: Intent, clock: ServerClock, record: Record | None, token: int | None
) -> Flow:
    """Release from the cached ``record``; returns :class:`Released`. Like a
    renewal, it removes our own lease through a Go reservation."""
    if record is None:
        record = yield Read(intent.name)
    conflicts = 0
    while True:
        earliest, _ = clock.bounds()
        decision = decide_release(intent, record, earliest, token)
        if isinstance(decision, Nothing):
            return Released(record, decision.reason)
        assert isinstance(decision, Write)
        result = yield _write_effect(intent.name, record, decision)
        if isinstance(result, Record):
            return Released(result, None)
        if result is None:
            return Released(None, "its object was deleted")
        conflicts = _count_conflict(intent, conflicts)
        record = yield Read(intent.name)


def _count_conflict(intent: Intent, conflicts: int) -> int:
    if conflicts >= MAX_CONFLICTS:
        raise LockConflict(f"lock {intent.name!r}: too many write conflicts", lock=intent.name)
    return conflicts + 1
