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
  lease (see :mod:`lockheed._clock`). A lease that also carries a sighting
  deadline (a Lease by other writers: client-go's rule) is expired as well
  once this host's monotonic clock passes it (:func:`sighted`), judged at
  each decision, never converted into server time ahead of it.
* Go lockheed's ``reserved/*`` annotations of another instance make an
  acquire wait for the change or the reservation's expiry. Renewal and
  release of our own live lease go through (still conditional on the
  resourceVersion), so a stale Go reservation cannot cost a holder its lock;
  and a lease handed to us in line is ours at once, reservation or not (a
  stale one would otherwise let the short hand-off lease run out). A waiter
  leaving the line waits for the reservation too, since a Go holder whose
  renewal fails on our write is never told: after :data:`CLAIM_WINDOW` it
  gives up, and its place lapses as a dead waiter's does.
* A malformed stored document is never overwritten unless forced.
* Renewal fails with :class:`LockLost` when our lease is gone, expired, or the
  object deleted; release after a loss leaves the new holder's lease alone.
* An acquire never returns a lease whose loss deadline passed while its write
  was in flight: it writes our lease again (or, out of time, removes it and
  raises :class:`LockTimeout`).
* Acquire and release ride out transient backend failures (refused, reset,
  5xx, 429) with jittered exponential backoff until their deadline; after a
  write whose outcome is unknown they re-read and decide again, recognising
  our own lease by its instance ID. Other failures end them at once.
* The fencing token is the resourceVersion that the winning write was
  conditional on, and is written with it (``lockheed/fencing-token``), so a
  listing always shows the holder's current token. A lock seen for the first
  time is therefore created free, then taken at the created version.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from ._clock import ServerClock
from ._conditions import Condition, LockView
from ._errors import (
    LockBackendError,
    LockConflict,
    LockForbidden,
    LockLost,
    LockStateError,
    LockTimeout,
    LockTypeError,
)
from ._queue import (
    IN_VIEW,
    QUEUE_KEY,
    Waiter,
    place_in_line,
    place_of,
    queue_meta,
    read_queue,
)
from ._state import MUTEX, NEVER, Lease, LockState, Record, StateFormatError, parse_time

__all__ = [
    "Acquired",
    "Create",
    "Effect",
    "Intent",
    "Read",
    "Released",
    "Replace",
    "Sleep",
    "Watch",
    "acquire_flow",
    "decide_acquire",
    "decide_release",
    "decide_renew",
    "join_entry",
    "joins_write",
    "leave_of",
    "loss_margin",
    "release_flow",
    "renew_flow",
    "resumed",
    "settle_turn",
    "sighted",
]

RESERVED_BY: Final = "reserved/by"
RESERVED_EXPIRES: Final = "reserved/expires"
TOKEN_KEY: Final = "lockheed/fencing-token"  # noqa: S105 - an annotation key
TOKEN_HOLDER_KEY: Final = "lockheed/fencing-holder"  # noqa: S105
# Consecutive write conflicts an operation without a deadline tolerates.
MAX_CONFLICTS: Final = 100
# Backoff after a transient backend failure: doubling from BACKOFF_BASE up to
# BACKOFF_CAP seconds, each delay drawn from its upper half (jitter).
BACKOFF_BASE: Final = 0.05
BACKOFF_CAP: Final = 2.0
# How long a release (without a lease deadline to bound it) keeps retrying.
RELEASE_PATIENCE: Final = 30.0
# A release hands the lock to the first waiter in line with a lease this long
# (or the waiter's own duration, if shorter); the waiter makes it a full lease
# with its first renewal. So a waiter that died in line holds the others up
# for at most this long. Likewise, when the lock is free and the waiters
# ahead of one do not take it, it waits this long per waiter ahead, then
# takes the lock itself (they are presumed gone).
CLAIM_WINDOW: Final = 5.0
# A waiter out of view (not labelled) reads the object at least this often,
# in CLAIM_WINDOWs (see _look): it may have come near the head unseen.
LOOK_AT_MOST_PLACES: Final = 2
LOOK_AT_MOST: Final = CLAIM_WINDOW * LOOK_AT_MOST_PLACES
# After a write conflict, the newer version is taken from the operation's open
# watch (no request) if it shows one within this long; else it is read.
REFRESH_WAIT: Final = 0.5
# An acquire whose write failed because two or more others joined the line
# (many contenders joining at once) pauses, then reads: a random delay up to CONFLICT_BASE,
# doubling with each such conflict in a row, at most CONFLICT_CAP. Its place in
# line does not suffer (see decide_acquire's ``since``).
CONFLICT_BASE: Final = 0.005
CONFLICT_CAP: Final = 1.0
# A cached copy of the object (the result of this instance's release) dates an
# acquire's place in line if it is at most this old when the acquire begins.
FRESH: Final = 1.0
# A lock handed to us this recently waits, before its release is written, at
# most this long after the hand-off for the join of the one that handed it over
# (which usually comes at once), so the release does not conflict with it.
SETTLE: Final = 0.02
# A shared kind's crowded acquire spreads its retry over twice the writes' time
# for each crowded conflict in a row, at most this many times doubled.
CROWD_DOUBLINGS: Final = 4


def loss_margin(duration: timedelta) -> float:
    """How long before the lease's end a holder stops believing it holds the lock."""
    return min(2.0, duration.total_seconds() / 10)


def safe_span(duration: timedelta | None) -> float | None:
    """Seconds from a write's send time during which its lease is surely ours."""
    if duration is None:
        return None
    return duration.total_seconds() - loss_margin(duration)


@dataclass(frozen=True)
class Intent:
    """What one lock instance asks for."""

    name: str
    instance_id: str
    duration: timedelta | None = None  # None: the lease never expires
    tags: tuple[str, ...] = ()
    reset_tags: bool = False
    force: Condition | None = None
    fair: bool = True  # wait in line; False: race for the lock whenever it is free

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
    token: int | None = None  # the fencing token written, when we hold it after


@dataclass(frozen=True)
class Wait:
    """Not now: wait for a change of the object, or until the server's time ``until``
    (or, with ``after``, that many seconds of this host's monotonic clock)."""

    until: datetime | None  # None: only a change can help (a lease that never expires)
    holder: str | None
    expires: datetime | None
    reason: str
    after: float | None = None


@dataclass(frozen=True)
class Accept:
    """The object already makes us the holder (the lock was handed to us, or a
    write of ours whose answer was lost landed): hold it without writing."""

    token: int
    expires: datetime


@dataclass(frozen=True)
class Refuse:
    error: Exception


@dataclass(frozen=True)
class Nothing:
    """Nothing to write; ``reason`` says why (for release of a lease that is gone)."""

    reason: str


Decision = Write | Wait | Refuse | Nothing | Accept


def sighted(record: Record | None, earliest: datetime, mono: float) -> Record | None:
    """``record`` as judged now: each lease with a sighting deadline
    (``sighted_until``, monotonic) ends by the earlier of its two expiries.

    The sighting deadline is re-derived on ``earliest``'s terms at the moment of
    the decision, ``earliest + (sighted_until - mono)``, so whether the lease
    is live is the monotonic comparison ``mono < sighted_until`` however the
    server-clock estimate narrowed or re-anchored since the sighting; a
    ``Wait`` until that expiry wakes when the monotonic deadline comes.
    ``mono`` is the monotonic time when ``earliest`` was taken, or later.
    """
    if record is None or record.state is None:
        return record
    leases = record.state.leases.values()
    if all(le.sighted_until is None for le in leases):
        return record
    judged = []
    for lease in leases:
        if lease.sighted_until is not None:
            left = lease.sighted_until - mono
            ends = earliest + max(timedelta(seconds=left), timedelta(microseconds=1))
            lease = replace(lease, expires=min(lease.expires, earliest if left <= 0 else ends))
        judged.append(lease)
    return replace(record, state=record.state.with_leases(judged))


def _as_read(wait: Wait, record: Record | None) -> Wait:
    """``wait`` naming the holder's lease end as the object says it (what the
    holder itself and every listing show); only its ``until`` is judged by sight."""
    state = record.state if record is not None else None
    lease = state.leases.get(wait.holder) if state is not None and wait.holder else None
    return wait if lease is None else replace(wait, expires=lease.expires)


def _reservation(record: Record, me: str, earliest: datetime) -> Wait | None:
    """The wait another instance's live Go reservation imposes on an acquire,
    unless the stored state already gives us a live lease (handed to us, or
    ours already): that lock is ours, and Go, which finds it held, lets go."""
    by = record.meta.get(RESERVED_BY)
    if not by or by == me:
        return None
    if record.state is not None and any(
        le.instance_id == me for le in record.state.live_leases(earliest)
    ):
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
    live = record.state.live_leases(earliest)
    return LockView(frozenset(record.state.tags), bool(live), len(live), record.state.lock_type)


def _token_meta(me: str, token: int | None) -> dict[str, str | None]:
    if token is None:
        return {}
    return {TOKEN_KEY: str(token), TOKEN_HOLDER_KEY: me}


def _forced(intent: Intent, record: Record, earliest: datetime) -> bool:
    return intent.force is not None and intent.force.matches(_view(record, earliest))


def _stamped_token(record: Record, me: str) -> int | None:
    """The fencing token stored for ``me`` (by our write, or by a hand-off to us)."""
    if record.meta.get(TOKEN_HOLDER_KEY) != me:
        return None
    try:
        return int(record.meta.get(TOKEN_KEY, ""))
    except ValueError:
        return None


def _without(queue: tuple[Waiter, ...], me: str) -> tuple[Waiter, ...]:
    return tuple(w for w in queue if w.instance_id != me)


def decide_acquire(
    intent: Intent,
    record: Record | None,
    earliest: datetime,
    latest: datetime,
    token: int | None = None,
    free_for: float = 0.0,
    join: bool = True,
    since: int | None = None,
) -> Decision:
    """Decide an acquire; ``earliest``/``latest`` bound the server's time now.

    ``token`` is the fencing token to keep (this instance holds the lock and
    takes it again; only while the object stores that token for it: a token
    kept across a loss and a new grant is stale); otherwise the write's token
    is the version it replaces.
    A missing object is created free (``Write`` with version None and no lease
    of ours), so that taking it is a replace with a token like any other.

    Fair (the default): a contender that finds the lock held, or free with
    others in line ahead of it, joins the line (one write) and waits; the
    first in line takes a free lock; a release hands the lock to the first
    in line (:func:`decide_release`), which then finds itself the holder
    (:class:`Accept`). ``join`` False (a caller that cannot wait any more)
    returns the wait instead of joining. ``free_for`` is how long (seconds, this host's clock)
    the caller has seen the lock free at this version: a waiter takes a free
    lock after :data:`CLAIM_WINDOW` per waiter ahead of it has passed.
    ``since`` is the version of the object the caller had seen when it began
    to ask: it joins ahead of waiters at the end of the line that began to ask
    later (:func:`~lockheed._queue.place_of`), so losing a race to join never
    costs a contender its turn; a free lock it would be first in line for it
    takes at once, in one write.
    """
    me = intent.instance_id
    expires = intent.expiry(latest)
    mine = Lease(me, expires)
    if record is None:
        fresh = LockState(intent.name, MUTEX, tags=_sync_tags((), intent.tags, intent.reset_tags))
        return Write(None, fresh.with_leases([]))
    busy = _reservation(record, me, earliest)
    if busy is not None:
        return busy
    if token is not None and _stamped_token(record, me) != token:
        # Not the grant it was kept for (another holder came between, then
        # this instance was handed the lock anew): that token is stale.
        token = None
    forced = _forced(intent, record, earliest)
    state: LockState | None = record.state
    if state is None or state.lock_type != MUTEX:
        if not forced:
            if state is not None:
                return Refuse(
                    LockTypeError(
                        f"lock {intent.name!r} is a {state.lock_type!r} lock, not a mutex",
                        lock=intent.name,
                    )
                )
            return Refuse(LockStateError(f"lock {intent.name!r}: {record.error}", lock=intent.name))
        state = LockState(intent.name, MUTEX)
    queue = read_queue(record.meta)
    place = next((i for i, w in enumerate(queue) if w.instance_id == me), None)
    live = state.live_leases(earliest)
    others = [le for le in live if le.instance_id != me]
    entry = Waiter(me, intent.duration, intent.tags, intent.reset_tags, since=since)
    joins_at = place_of(queue, since)

    def take(line: tuple[Waiter, ...]) -> Write:
        assert state is not None and record is not None
        tags = _sync_tags(state.tags, intent.tags, intent.reset_tags)
        new = replace(state, name=intent.name, lock_type=MUTEX, tags=tags).with_leases([mine])
        stamp = token if token is not None and me in state.leases else token_of(record)
        meta = _token_meta(me, stamp)
        if line != queue:
            meta.update(queue_meta(line))
        return Write(record.version, new, meta, expires=expires, token=stamp)

    def enqueue() -> Write:
        assert state is not None and record is not None
        return Write(
            record.version, state, queue_meta((*queue[:joins_at], entry, *queue[joins_at:]))
        )

    if forced:
        return take(_without(queue, me))
    if others:
        if len(live) > 1:
            ids = ", ".join(sorted(le.instance_id for le in live))
            return Refuse(
                LockStateError(
                    f"mutex {intent.name!r} has several live leases: {ids}", lock=intent.name
                )
            )
        holder = others[0]
        if intent.fair and place is None and join:
            return enqueue()
        until = None if holder.expires >= NEVER else holder.expires
        return Wait(until, holder.instance_id, holder.expires, "held")
    if live:  # ours, and live
        stamped = _stamped_token(record, me)
        if token is None and stamped is not None and place is None:
            return Accept(stamped, live[0].expires)  # handed to us, or our write landed
        return take(_without(queue, me))
    if not intent.fair or not queue or place == 0 or (place is None and joins_at == 0):
        return take(_without(queue, me))
    if place is None:
        if join:
            return enqueue()
        return Wait(None, queue[0].instance_id, None, "queued", after=CLAIM_WINDOW * len(queue))
    patience = place * CLAIM_WINDOW
    if free_for >= patience:  # those ahead let the free lock be: presumed gone
        return take(queue[place + 1 :])
    return Wait(None, queue[0].instance_id, None, "queued", after=patience - free_for)


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


def release_start(
    me: str, record: Record | None, earliest: datetime
) -> Decision | tuple[Record, LockState, tuple[Waiter, ...], tuple[Waiter, ...]]:
    """The part of a release every kind of lock shares: a decision when ``me``
    holds no lease (leave the line, or nothing to do, saying why; a leave
    waits while another instance's Go reservation stands), else the record,
    its state, its line and the line without ``me``."""
    if record is None:
        return Nothing("its object was deleted")
    state = record.state
    if state is None:
        return Nothing("stored state is unreadable")
    queue = read_queue(record.meta)
    line = _without(queue, me)
    if me not in state.leases:
        if line != queue:  # leaving the line
            # Not between a Go writer's two updates: its second, conditional on
            # the version its reservation made, would fail on ours, and a Go
            # holder whose renewal fails so is never told (it keeps reserving
            # for 30 s while its lease runs out).
            busy = _reservation(record, me, earliest)
            if busy is not None:
                return busy
            return Write(record.version, state, queue_meta(line))
        holders = [le.instance_id for le in state.live_leases(earliest)]
        return Nothing(f"taken over by {holders[0]}" if holders else "our lease was removed")
    return record, state, queue, line


def decide_release(
    intent: Intent,
    record: Record | None,
    earliest: datetime,
    token: int | None,
    latest: datetime | None = None,
) -> Decision:
    """Remove our lease and our place in line (and nothing else), syncing tags as
    Go does. If others wait in line and nobody else holds the lock, the same
    write hands it to the first of them: a lease of at most
    :data:`CLAIM_WINDOW` (from ``latest``, the server's latest time now) and
    the fencing token for it, which that waiter learns from its watch."""
    me = intent.instance_id
    start = release_start(me, record, earliest)
    if not isinstance(start, tuple):
        return start
    record, state, queue, line = start
    rest = [le for le in state.leases.values() if le.instance_id != me]
    tags = _sync_tags(state.tags, intent.tags, intent.reset_tags)
    meta = _token_meta(me, token)
    if line and not any(le.live(earliest) for le in rest):
        head, line = line[0], line[1:]
        tags = _sync_tags(tags, head.tags, head.reset_tags)  # the new holder's, as it asked
        span = timedelta(seconds=CLAIM_WINDOW)
        if head.duration is not None:
            span = min(span, head.duration)
        now = latest if latest is not None else earliest
        rest = [Lease(head.instance_id, now + span)]
        meta = _token_meta(head.instance_id, token_of(record))
    if line != queue:
        meta.update(queue_meta(line))
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
    limit). The result is the changed Record, None if deleted, or :data:`UNCHANGED`.
    ``holder`` is who holds the lock meanwhile, as decided (None: nobody, or only
    waiters ahead in line); lockers ignore it, a lock's waiting observer (leader
    election's, ``lockheed run --verbose``'s) is told, with ``expires``, the
    end of that holder's lease (None: unknown, or it never expires).

    ``session`` (set by the shell, one per operation) lets a locker keep one
    watch open across the operation's successive waits instead of opening a
    new one each time; the shell ends the session when the operation ends.
    A ``quick`` watch asks for the version that a conflict proved exists
    (see the fields)."""

    name: str
    version: str | None
    until: float | None
    session: Any = None
    holder: str | None = None
    expires: datetime | None = None
    # A look, not a wait (after a conflict, or before a release): the newest
    # version received by ``until``; the lock's waiting observer is not told.
    quick: bool = False
    # Whether the locker may open a watch for it; if not, a locker with no open
    # watch for the session answers UNCHANGED at once, without a request.
    open: bool = True
    # A version for which ``unless(record)`` is true does not end the wait (the
    # core says it changes nothing for this waiter); when the time is up, the
    # newest such version is the result. Lockers may ignore it.
    unless: Callable[[Record], bool] | None = None
    # The instance whose view label (``_queue.view_label``) the locker may watch
    # by instead of every change: it then sees only the versions that label it
    # (it holds the lock, or is first or second in line behind a Go holder or
    # a free lock: _queue.in_view), and reads the object when the
    # wait's time is up or a quick look finds it out of view. None: every change.
    view: str | None = None
    # With ``view``: out of view, read by this monotonic time at the latest (a
    # waiter too far back to be labelled: the waiters ahead may all have died).
    look: float | None = None


@dataclass(frozen=True)
class Sleep:
    """Wait until monotonic time ``until`` (performed by the shell, not the locker).
    The result is ignored; the flow checks the time itself."""

    name: str
    until: float


Effect = Read | Create | Replace | Watch | Sleep


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
    sent: float  # monotonic time the winning write was sent (or the hand-off seen)
    deadline: float | None  # monotonic loss deadline; None: the lease never expires
    handed: bool = False  # handed over in line: a short lease, to be made full by a renewal
    # The version the waiter had before the one that handed it the lock (None: not
    # handed, or not known): who held the lock then (shared kinds' release order).
    before: Record | None = None


@dataclass(frozen=True)
class Released:
    record: Record | None
    lost_reason: str | None  # set when there was no lease of ours to remove


def token_of(record: Record) -> int:
    """Fencing token of a write conditional on ``record``: its resourceVersion.

    resourceVersions are etcd revisions, which strictly increase with every
    write in the cluster (Kubernetes 1.35 documents them as comparable
    integers). A write that takes the lock succeeds only at the current
    version, which is at least the version of the previous holder's own
    winning write, itself larger than that holder's token. So every hand-off,
    including one by Go lockheed or one that deleted and re-created the
    object, yields a larger token, and the token is known before the write,
    so it is written with it.
    """
    try:
        return int(record.version)
    except ValueError:
        raise LockStateError(
            f"resourceVersion {record.version!r} is not an integer; "
            "fencing tokens need etcd-backed storage",
            lock=record.name,
        ) from None


def _line_only(effect: Replace) -> tuple[tuple[Waiter, ...], tuple[Waiter, ...]] | None:
    """The line before and after ``effect``, if the line is all it changes."""
    base = effect.base
    text = effect.meta.get(QUEUE_KEY, "")
    if (
        len(effect.meta) != 1
        or effect.version != base.version
        or base.state is None
        or effect.state != base.state
    ):
        return None
    return read_queue(base.meta), read_queue({QUEUE_KEY: text} if text else {})


def join_entry(effect: Replace) -> Waiter | None:
    """The waiter that ``effect`` adds to a mutex's line, if that is all it does
    (the state and every other annotation as read, the entry where
    :func:`~lockheed._queue.place_of` puts it): such joins of several waiters
    at one version may be written together (:func:`joins_write`). Else None."""
    line = _line_only(effect)
    if line is None or effect.base.state is None or effect.base.state.lock_type != MUTEX:
        return None
    before, after = line
    known = {w.instance_id for w in before}
    new = [w for w in after if w.instance_id not in known]
    if len(new) != 1 or len(after) != len(before) + 1:
        return None
    at = place_of(before, new[0].since)
    return new[0] if after == (*before[:at], new[0], *before[at:]) else None


def leave_of(effect: Replace) -> str | None:
    """The instance ID that ``effect`` removes from a line (of any kind of
    lock), if that is all it does: such leaves may be written together. Else None."""
    line = _line_only(effect)
    if line is None:
        return None
    before, after = line
    if len(after) != len(before) - 1:
        return None
    # In one pass (a crowd leaving a long line at once asks this of every leave):
    # the first entry that differs is the one gone, and the rest must follow it.
    at = next(
        (i for i, (b, a) in enumerate(zip(before, after, strict=False)) if b != a), len(after)
    )
    return before[at].instance_id if after == before[:at] + before[at + 1 :] else None


def joins_write(base: Record, entries: Iterable[Waiter], leaving: Iterable[str] = ()) -> Replace:
    """One write that removes ``leaving`` (from :func:`leave_of`) from the line
    of ``base`` and adds ``entries`` (from :func:`join_entry`), each where it
    would join (by its ``since``), in the order given: what their writes one
    after another would store. An entry already in the line keeps its place.
    ``base`` is a version they were decided on, or one that differs from it
    only by line changes of these waiters' own locker."""
    gone = set(leaving)
    queue = tuple(w for w in read_queue(base.meta) if w.instance_id not in gone)
    for entry in entries:
        if all(w.instance_id != entry.instance_id for w in queue):
            at = place_of(queue, entry.since)
            queue = (*queue[:at], entry, *queue[at:])
    assert base.state is not None
    return Replace(base.name, base.version, base.state, queue_meta(queue), base)


def _write_effect(name: str, record: Record | None, decision: Write) -> Effect:
    if decision.version is None or record is None:
        return Create(name, decision.state, decision.meta)
    state = decision.state
    if record.state is not None and any(
        le.sighted_until is not None for le in state.leases.values()
    ):
        # A lease kept from the record (only decoded leases carry a sighting) is
        # written as it was read, not as :func:`sighted` judged it for the decision.
        read = record.state.leases
        state = state.with_leases(
            read.get(le.instance_id, le) if le.sighted_until is not None else le
            for le in state.leases.values()
        )
    return Replace(name, decision.version, state, decision.meta, record)


def _written_expiry(record: Record, me: str, planned: datetime | None) -> datetime | None:
    """Our lease's expiry as the written object carries it, which is how every reader
    judges it (a Lease rounds it to its server stamp and whole seconds); ``planned``
    when the object does not say."""
    lease = record.state.leases.get(me) if record.state is not None else None
    return planned if lease is None else lease.expires


def _wait_until(clock: ServerClock, wait: Wait, deadline: float | None) -> float | None:
    ends = [t for t in (deadline,) if t is not None]
    if wait.until is not None:
        ends.append(clock.monotonic_at(wait.until) + 0.001)
    if wait.after is not None:
        ends.append(clock.monotonic() + wait.after)
    return min(ends) if ends else None


def _ahead(record: Record | None, me: str) -> tuple[str, ...]:
    """The waiters ahead of ``me`` in the stored line (none if not in it)."""
    line = [] if record is None else [w.instance_id for w in read_queue(record.meta)]
    return tuple(line[: line.index(me)]) if me in line else ()


def _still_behind(clock: ServerClock, me: str, seen: Record) -> Callable[[Record], bool]:
    """For a waiter in line while the lock is held: whether a new version
    changes nothing for it, so the watch need not wake it. It is still in line
    (and not newly at its head), someone holds the lock, and no live lease ends
    before the first end in ``seen`` (the version its wait was decided on,
    which bounds the wait's time): its wait then ends no later than it must. A
    hand-off to a live waiter, a renewal or a join sleeps through, also for the
    first in line, whose wait is timed by the holder's lease; a lease ending
    sooner (a dead waiter's short claim replacing a longer lease), reaching the
    head of the line, the lock coming free or its entry gone wake it."""

    bound = _first_end(clock, seen)
    first = place_in_line(seen.meta, me) == 0

    def still(record: Record) -> bool:
        if bound is None or record.state is None:
            return False
        place = place_in_line(record.meta, me)
        if place is None or (place == 0 and not first):
            return False  # not in line, or it has just reached the head
        ends = _first_end(clock, record, _FIRST_ENDS)
        return ends is not None and ends >= bound

    return still


class _Memo:
    """One remembered result, swapped whole (safe to share between threads)."""

    last: tuple[Record, ServerClock, float, datetime | None] | None = None


# The first lease end of the version that a filter of _still_behind judged
# last, for the other waiters' filters: the asyncio tasks of one process that
# share a watch judge each version in turn, within microseconds. Reused only
# for the same record, on the same clock, within MEMO_FOR seconds.
_FIRST_ENDS = _Memo()
MEMO_FOR = 0.005


def _first_end(clock: ServerClock, record: Record, memo: _Memo | None = None) -> datetime | None:
    """When the first live lease in ``record`` ends (None: none is live)."""
    now = clock.monotonic()
    last = None if memo is None else memo.last
    if last is not None and last[0] is record and last[1] is clock and now - last[2] < MEMO_FOR:
        return last[3]
    if record.state is None:
        return None
    earliest, _ = clock.bounds()
    ends = min((le.expires for le in record.state.live_leases(earliest)), default=None)
    if memo is not None:
        memo.last = (record, clock, now, ends)
    return ends


def _freed_at(clock: ServerClock, record: Record | None) -> float:
    """When (monotonic, on the server's earliest time: never sooner) the lock in
    ``record``, free now, became free: when the last lease it shows ran out
    (now, if it shows none). A waiter out of view (``Watch.view``) may see a free
    lock only at its ``look``, well after a dead waiter's claim ran out; its
    patience with the waiters ahead counts from then, as it does for a waiter
    that saw the change."""
    now = clock.monotonic()
    state = record.state if record is not None else None
    ends = [le.expires for le in state.leases.values()] if state is not None else []
    if not ends:
        return now
    earliest, _ = clock.bounds()
    return min(now, now + (max(ends) - earliest).total_seconds())


def _look(clock: ServerClock, ahead: tuple[str, ...]) -> float:
    """When a waiter with ``ahead`` before it in line, out of view (no label
    shows it every change: :func:`~lockheed._queue.view_labels`), reads the
    object at the latest: the first three every :data:`CLAIM_WINDOW`, those
    further back every :data:`LOOK_AT_MOST`. If the waiters ahead died, no
    write labels it; it then finds the lock free soon enough to keep the
    bound of about ``CLAIM_WINDOW`` per dead waiter, and at most one look
    more. The shell uses the look only while the waiter is out of view.

    Behind a lockheed holder nobody in line is labelled: a waiter learns of
    the line moving up only when a release hands it the lock. One that the
    line brought to the head unseen, behind a waiter handed the lock that
    died, sees no write before that waiter's claim runs out and the lock is
    free; nor, behind a Go holder that took the lock after the last lockheed
    write (once a lockheed holder's lease ran out), does Go's release label
    it. So no waiter out of view, however far back it joined, waits longer
    than ``LOOK_AT_MOST`` to read, and the first three read every
    ``CLAIM_WINDOW``."""
    behind = min(max(len(ahead) - IN_VIEW + 1, 1), LOOK_AT_MOST_PLACES)
    return clock.monotonic() + CLAIM_WINDOW * behind


def _accepted(clock: ServerClock, record: Record, decision: Accept) -> Acquired | None:
    """Hold a lease that the object already gives us, if enough of it is left to be
    safe: its loss deadline comes from the server's latest possible time now."""
    now = clock.monotonic()
    if decision.expires >= NEVER:
        return Acquired(record, decision.token, decision.expires, now, None, handed=True)
    _, latest = clock.bounds()
    left = decision.expires - latest
    if left <= timedelta(0):
        return None
    deadline = now + left.total_seconds() - loss_margin(left)
    return Acquired(record, decision.token, decision.expires, now, deadline, handed=True)


def _timed_out(clock: ServerClock, deadline: float | None) -> bool:
    return deadline is not None and clock.monotonic() >= deadline


class _Patience:
    """Backoff after transient backend failures, until a monotonic ``deadline``.

    ``pause`` sleeps before the next try (jittered, doubling, at least the
    server's ``Retry-After``), or raises: the error itself when it is not
    transient or, at the deadline, :class:`LockTimeout` for a waiting acquire
    (``timeout_error``) and the error itself otherwise.
    """

    def __init__(
        self,
        name: str,
        clock: ServerClock,
        deadline: float | None,
        rng: Callable[[], float],
        timeout_error: bool,
    ):
        self.name, self.clock, self.deadline, self.rng = name, clock, deadline, rng
        self.timeout_error = timeout_error
        self.failures = 0

    def ok(self) -> None:
        self.failures = 0

    def pause(self, exc: LockBackendError) -> Flow:
        if not exc.transient:
            raise exc
        now = self.clock.monotonic()
        if self.deadline is not None and now >= self.deadline:
            if self.timeout_error:
                raise LockTimeout(
                    f"lock {self.name!r}: the API server could not be reached "
                    f"before the timeout ({exc})",
                    lock=self.name,
                ) from exc
            raise exc
        step = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(self.failures, 16))
        self.failures += 1
        delay = step * (0.5 + self.rng() / 2)
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        until = now + delay if self.deadline is None else min(now + delay, self.deadline)
        while self.clock.monotonic() < until:
            yield Sleep(self.name, until)


def _read(name: str, patience: _Patience) -> Flow:
    """Read the object, retrying transient failures with ``patience``."""
    while True:
        try:
            record = yield Read(name)
        except LockBackendError as exc:
            yield from patience.pause(exc)
            continue
        patience.ok()
        return record


def _refresh(
    name: str,
    record: Record | None,
    clock: ServerClock,
    patience: _Patience,
    wait: float = REFRESH_WAIT,
    view: str | None = None,
) -> Flow:
    """The object after a write conflict: the newest version the operation's watch
    shows within ``wait`` seconds (the watch is opened if the operation has none
    yet: one request, like a read, and later conflicts cost none), or a read when
    it shows none. ``wait`` 0: only what the watch has received already; if it
    has nothing newer, ``record`` is the newest known. ``view``: the watch's
    (:class:`Watch`). A watch that fails, or that the API server refuses (a
    user whose Role lacks ``watch`` can still renew and release), is replaced
    by a read."""
    if record is None:
        return (yield from _read(name, patience))
    try:
        result = yield Watch(name, record.version, clock.monotonic() + wait, quick=True, view=view)
    except (LockBackendError, LockForbidden):  # read (which backs off if it fails too)
        return (yield from _read(name, patience))
    if result is None or isinstance(result, Record):
        return result
    if wait == 0:
        return record
    return (yield from _read(name, patience))


def _next_version(
    name: str, record: Record, clock: ServerClock, until: float, patience: _Patience
) -> Flow:
    """The next version of the object after ``record`` from a watch (one
    request if the operation has none open), or ``record`` if none comes by
    ``until`` (monotonic). A watch the API server refuses is replaced by a
    read after a short pause; one that fails, by a read after a backoff."""
    try:
        result = yield Watch(name, record.version, until, quick=True)
    except LockForbidden:
        yield Sleep(name, min(until, clock.monotonic() + REFRESH_WAIT))
        return (yield from _read(name, patience))
    except LockBackendError as exc:
        yield from patience.pause(exc)
        return (yield from _read(name, patience))
    return record if result is UNCHANGED else result


def _spread(
    name: str,
    clock: ServerClock,
    deadline: float | None,
    rng: Callable[[], float],
    crowd: int,
    took: float,
) -> Flow:
    """A random pause among ``crowd`` writers that met at once: up to ``crowd``
    times ``took`` (how long our failed write took), at most
    :data:`CONFLICT_CAP`, so that they come back about one write apart."""
    span = min(CONFLICT_CAP, crowd * max(took, CONFLICT_BASE))
    until = clock.monotonic() + rng() * span
    if deadline is not None:
        until = min(until, deadline)
    while clock.monotonic() < until:
        yield Sleep(name, until)


def _line_changes(before: Record | None, after: Record | None, me: str) -> int:
    """How many others joined or left the line between ``before`` and ``after``."""
    if after is None:
        return 0
    was = {w.instance_id for w in read_queue(before.meta)} if before is not None else set()
    now = {w.instance_id for w in read_queue(after.meta)}
    return len((was ^ now) - {me})


def _newcomers(before: Record | None, after: Record | None, me: str, entered: bool = False) -> int:
    """How many others joined the line between ``before`` and ``after``;
    ``entered`` (the shared kinds', where many enter without joining): also
    how many others took a lease."""
    if after is None:
        return 0
    known = {w.instance_id for w in read_queue(before.meta)} if before is not None else set()
    n = sum(w.instance_id not in known and w.instance_id != me for w in read_queue(after.meta))
    if entered and after.state is not None:
        had = before.state.leases if before is not None and before.state is not None else {}
        n += sum(who not in had and who != me for who in after.state.leases)
    return n


def _version(record: Record | None) -> int | None:
    try:
        return None if record is None else int(record.version)
    except ValueError:
        return None


def _pause(
    name: str, clock: ServerClock, deadline: float | None, rng: Callable[[], float], streak: int
) -> Flow:
    """A random pause after ``streak`` write conflicts in a row (see :data:`CONFLICT_BASE`)."""
    span = min(CONFLICT_CAP, CONFLICT_BASE * 2.0 ** min(streak - 1, 16))
    until = clock.monotonic() + span * rng()
    if deadline is not None:
        until = min(until, deadline)
    while clock.monotonic() < until:
        yield Sleep(name, until)


def acquire_flow(
    intent: Intent,
    clock: ServerClock,
    deadline: float | None,
    cached: Record | None = None,
    token: int | None = None,
    rng: Callable[[], float] = random.random,
    decide: Callable[..., Decision] = decide_acquire,
    cached_at: float | None = None,
    behind: Callable[[ServerClock, Any, Record], Callable[[Record], bool]] | None = None,
    watch_only: bool = False,
) -> Flow:
    """Acquire, waiting (by watch) until ``deadline`` (monotonic; None = forever).

    With the ``cached`` object this instance last wrote (a lock acquired again
    by the same instance), the first write goes out without a read; if someone
    wrote since, it meets a conflict, and the flow reads and decides again.
    ``token`` is the fencing token of a lock this instance holds, kept when it
    takes it again. Transient failures are retried until the deadline.
    ``decide`` is :func:`decide_acquire`'s stand-in for other lock kinds
    (:mod:`lockheed._shared_core`), and ``behind`` their :func:`_still_behind`:
    given the clock, the intent and the record a wait for holders was decided
    on, a predicate under which a newer version changes nothing for the waiter.
    ``watch_only`` (the shared kinds'): after every conflict the newer version
    comes from the watch (a read only if it shows none in time), and when two
    or more newcomers (joining the line, or entering without joining) made
    the write fail, the pause is spread over as many writes' time as came,
    doubled for each such conflict in a row (:func:`_spread`), then the flow
    takes what its watch received meanwhile.

    The acquire's place in line is dated by the first version it decides on
    (``since`` of :func:`decide_acquire`): the cached object's if it was received
    (``cached_at``, monotonic) at most :data:`FRESH` ago, else the first one
    this flow reads. After a write conflict it takes the newer version from its
    watch (:func:`_refresh`; a read after a second conflict in a row), and when
    others joining the line made it fail it pauses a random, doubling while
    (:data:`CONFLICT_BASE`) and takes what its watch received meanwhile, so
    that many contenders joining at once do not keep colliding.
    """
    name = intent.name
    patience = _Patience(
        name, clock, deadline, rng, timeout_error=deadline is None or deadline > clock.monotonic()
    )
    record = cached
    fresh = cached is not None and cached_at is not None and clock.monotonic() - cached_at <= FRESH
    if record is None:
        record = yield from _read(name, patience)
        fresh = True
    since = _version(record) if fresh else None
    conflicts = late = streak = crowd = 0
    # A fair mutex waiter may watch only the versions that concern it (Watch.view).
    view = intent.instance_id if decide is decide_acquire and intent.fair else None
    waited: Record | None = None  # the version this flow last waited on
    # When this waiter first saw the lock free with the same waiters ahead of it:
    # writes that do not change those (newcomers joining behind) keep the count.
    free_seen: tuple[tuple[str, ...], float] | None = None
    while True:
        # The send time is taken *before* the server-time bounds: a stall between
        # the two then only shortens what we believe of the lease, never lengthens it.
        sent = clock.monotonic()
        earliest, latest = clock.bounds()
        ahead = _ahead(record, intent.instance_id)
        free_for = 0.0
        if free_seen is not None and free_seen[0] == ahead:
            free_for = clock.monotonic() - free_seen[1]
        can_wait = not _timed_out(clock, deadline)
        if since is None and record is not cached:  # the first version this flow got
            since = _version(record)
        judged = sighted(record, earliest, clock.monotonic())
        decision = decide(intent, judged, earliest, latest, token, free_for, can_wait, since=since)
        if isinstance(decision, Wait) and judged is not record:
            decision = _as_read(decision, record)
        if isinstance(decision, Refuse):
            raise decision.error
        if isinstance(decision, Accept):
            assert record is not None
            got = _accepted(clock, record, decision)
            if got is not None:
                return replace(got, before=waited)
            token = decision.token  # too little of it left to trust: write it again
            continue
        if isinstance(decision, Write):
            wrote = clock.monotonic()
            try:
                result = yield _write_effect(name, record, decision)
            except LockBackendError as exc:
                # The write may or may not have landed: read and decide again (a
                # lease of ours that landed is recognised by our instance ID).
                yield from patience.pause(exc)
                record = yield from _read(name, patience)
                continue
            patience.ok()
            if isinstance(result, Record):
                record, streak, crowd = result, 0, 0
                if decision.token is None:  # created free: now take it
                    continue
                span = safe_span(intent.duration)
                if span is None or clock.monotonic() < sent + span:
                    expires = _written_expiry(result, intent.instance_id, decision.expires)
                    assert expires is not None
                    until = None if span is None else sent + span
                    return Acquired(result, decision.token, expires, sent, until)
                # The answer came after the lease's loss deadline: holding it now
                # would not be safe. Write it again; out of time, give up (the
                # shell then removes the lease, as after any failed acquire).
                if _timed_out(clock, deadline):
                    raise LockTimeout(
                        f"lock {name!r}: the API server answered too slowly to hold "
                        f"a lease of {intent.duration}",
                        lock=name,
                    )
                continue
            conflicts += 1
            if deadline is None and conflicts > MAX_CONFLICTS:
                raise LockConflict(f"lock {name!r}: too many write conflicts", lock=name)
            late += _timed_out(clock, deadline)
            if late > 1:  # one more try after the deadline, as a non-blocking acquire gets
                raise LockTimeout(
                    f"lock {name!r}: other writers kept changing it until the timeout",
                    lock=name,
                )
            streak += 1
            before = record
            took = clock.monotonic() - wrote
            # The watch, which a busy host may read late: once in a row (always
            # for the shared kinds, whose writers take turns: see release_flow).
            if streak == 1 or watch_only:
                record = yield from _refresh(name, record, clock, patience, view=view)
            else:
                record = yield from _read(name, patience)
            # Others joining made the write fail twice in a row or more: many
            # contenders are joining at once; pause, then look again.
            # Two or more joined since our copy: a crowd (one is the usual race
            # with a holder joining again, retried at once).
            # For a take of the shared kinds, others entering count too (many
            # readers entering at once); a join meets only others joining.
            entered = watch_only and decision.token is not None
            joined = _newcomers(before, record, intent.instance_id, entered=entered)
            crowd = crowd + 1 if joined > 1 else 0
            if crowd and not late:
                if watch_only:  # spread over as many writes' time as joined (or entered) at once
                    # ...doubled for each crowded conflict in a row: those seen
                    # since our copy are only the first of a crowd starting at once.
                    many = joined << min(crowd - 1, CROWD_DOUBLINGS)
                    yield from _spread(name, clock, deadline, rng, many, took)
                    # What the pause let happen, from the watch (open since the
                    # conflict): no request, and no read for others to write under.
                    record = yield from _refresh(name, record, clock, patience, wait=0)
                else:
                    yield from _pause(name, clock, deadline, rng, crowd)
                    # What the pause let happen, from the watch (open since the first
                    # conflict, and given the pause to catch up): no request.
                    record = yield from _refresh(name, record, clock, patience, 0, view)
            continue
        assert isinstance(decision, Wait)
        if decision.reason != "queued":
            free_seen = None
        elif free_seen is None or free_seen[0] != ahead:
            free_seen = (ahead, _freed_at(clock, judged) if view else clock.monotonic())
        if _timed_out(clock, deadline):
            what = (
                f"is free, but {decision.holder} is ahead in line"
                if decision.reason == "queued"
                else f"is {decision.reason} by {decision.holder}"
                + (f" until {decision.expires.isoformat()}" if decision.expires else "")
            )
            raise LockTimeout(
                f"lock {name!r} {what}",
                lock=name,
                holder=decision.holder,
                expires=decision.expires,
            )
        held_by = decision.holder if decision.reason == "held" else None
        in_line = record is not None and any(
            w.instance_id == intent.instance_id for w in read_queue(record.meta)
        )
        unless = None
        if decide is decide_acquire:
            if held_by is not None and in_line and record is not None:
                unless = _still_behind(clock, intent.instance_id, record)
        elif behind is not None and held_by is not None and record is not None:
            unless = behind(clock, intent, record)
        waited = record
        try:
            result = yield Watch(
                name,
                record.version if record else None,
                _wait_until(clock, decision, deadline),
                holder=held_by,
                expires=decision.expires if held_by is not None else None,
                unless=unless,
                # Only a waiter in line is labelled (not one kept out by a Go
                # reservation before it joins, say): the others watch every change.
                view=view if in_line else None,
                look=_look(clock, ahead) if view is not None and in_line else None,
            )
        except LockBackendError as exc:
            yield from patience.pause(exc)
            record = yield from _read(name, patience)
            continue
        patience.ok()
        if result is not UNCHANGED:
            record = result


def renew_flow(
    intent: Intent,
    clock: ServerClock,
    record: Record | None,
    token: int,
    decide: Callable[..., Decision] = decide_renew,
) -> Flow:
    """Renew from the cached ``record`` (one PUT when nobody else wrote).

    Returns ``(record, expires, sent)``; raises :class:`LockLost`, or the
    backend's error (the renewer retries within the loss deadline). A Go
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
        sent = clock.monotonic()  # before the bounds: see acquire_flow
        earliest, latest = clock.bounds()
        decision = decide(
            intent, sighted(record, earliest, clock.monotonic()), earliest, latest, token
        )
        if isinstance(decision, Refuse):
            if not fresh:  # judged from our cached copy: read once to name the new holder
                fresh = True
                record = yield Read(intent.name)
                continue
            raise decision.error
        assert isinstance(decision, Write)
        result = yield _write_effect(intent.name, record, decision)
        if isinstance(result, Record):
            return result, _written_expiry(result, intent.instance_id, decision.expires), sent
        if result is None:
            raise LockLost(f"lock {intent.name!r}: its object was deleted", lock=intent.name)
        conflicts = _count_conflict(intent, conflicts)
        record = yield Read(intent.name)


def resumed(flow: Flow, result: Any = None, error: Exception | None = None) -> Flow:
    """``flow``, paused at an effect that was performed elsewhere (the renewer
    sends the first writes of many renewals together), resumed with that
    effect's ``result``, or with ``error`` thrown in as a shell would; it then
    yields its further effects as before, and returns what ``flow`` returns.
    Closing it closes ``flow``."""
    try:
        try:
            effect = flow.send(result) if error is None else flow.throw(error)
        except StopIteration as done:
            return done.value
        while True:
            try:
                outcome = yield effect
            except Exception as exc:  # the shell's backend error: the flow decides
                try:
                    effect = flow.throw(exc)
                except StopIteration as done:
                    return done.value
                continue
            try:
                effect = flow.send(outcome)
            except StopIteration as done:
                return done.value
    finally:
        flow.close()


def release_flow(
    intent: Intent,
    clock: ServerClock,
    record: Record | None,
    token: int | None,
    rng: Callable[[], float] = random.random,
    decide: Callable[..., Decision] = decide_release,
    settle_until: float | None = None,
    turn: Callable[[Record], float] | None = None,
    watch_only: bool = False,
) -> Flow:
    """Release from the cached ``record``; returns :class:`Released`. Like a
    renewal, it removes our own lease through a Go reservation.

    ``settle_until`` (monotonic) and ``turn`` (see :func:`_await_turn`): before
    each write (the first, and again after a conflict), wait on the open watch
    (no request) until then at most while ``turn`` says others write first:
    for a mutex handed to us a moment ago, the join of the instance that
    handed it over, which often comes at once (:func:`settle_turn`; releasing
    from a copy that has it avoids a conflict); for the shared kinds, the
    holders that leave before us (:func:`lockheed._shared_core.release_turn`).
    ``watch_only`` (the shared kinds'): after a conflict the newer version
    comes from the watch (a read only if it shows none in time); leaving the
    line, it reads, and when two or more others joined or left meanwhile it
    pauses over as many writes' time (:func:`_spread`) and reads again.

    Leaving the line (a waiter that gave up) waits while another instance's
    Go reservation stands (see :func:`release_start`), for its next version or
    the reservation's expiry; after :data:`CLAIM_WINDOW` of that it gives up
    with :class:`LockTimeout`, and its place lapses as a dead waiter's would.

    Transient failures are retried for as long as the lease could still be
    live (at most :data:`RELEASE_PATIENCE`); after a write whose outcome is
    unknown, a lease of ours found gone counts as released.
    """
    name = intent.name
    duration = intent.duration.total_seconds() if intent.duration else RELEASE_PATIENCE
    deadline = clock.monotonic() + min(RELEASE_PATIENCE, duration)
    patience = _Patience(name, clock, deadline, rng, timeout_error=False)
    if record is None:
        record = yield from _read(name, patience)
    elif settle_until is not None and turn is not None:
        record = yield from _await_turn(name, record, clock, settle_until, turn)
    conflicts = 0
    unsure = False
    reserved_since: float | None = None  # when a Go reservation first held up our leave
    while True:
        if conflicts and turn is not None and record is not None and settle_until is not None:
            record = yield from _await_turn(name, record, clock, settle_until, turn)
        earliest, latest = clock.bounds()
        decision = decide(
            intent, sighted(record, earliest, clock.monotonic()), earliest, token, latest
        )
        if isinstance(decision, Nothing):
            return Released(record, None if unsure else decision.reason)
        if isinstance(decision, Wait):  # leaving the line, held up by a Go reservation
            assert record is not None
            now = clock.monotonic()
            reserved_since = now if reserved_since is None else reserved_since
            limit = min(deadline, reserved_since + CLAIM_WINDOW)
            if now >= limit:
                raise LockTimeout(
                    f"lock {name!r}: could not leave the line: {decision.reason} by "
                    f"{decision.holder} (Go lockheed) for {now - reserved_since:.1f} s; "
                    "our place in line is left to lapse",
                    lock=name,
                    holder=decision.holder,
                )
            until = _wait_until(clock, decision, limit)
            assert until is not None
            record = yield from _next_version(name, record, clock, until, patience)
            continue
        assert isinstance(decision, Write)
        wrote = clock.monotonic()
        try:
            result = yield _write_effect(name, record, decision)
        except LockBackendError as exc:
            yield from patience.pause(exc)
            unsure = True
            record = yield from _read(name, patience)
            continue
        patience.ok()
        if isinstance(result, Record):
            return Released(result, None)
        if result is None:
            return Released(None, "its object was deleted")
        took = clock.monotonic() - wrote
        conflicts = _count_conflict(intent, conflicts)
        state = record.state if record is not None else None
        if state is not None and intent.instance_id not in state.leases:
            # Only leaving the line (many may leave at once, at a shared
            # timeout say): pause as a crowded acquire does, then look again.
            if watch_only:  # spread over as many writes' time as left at once
                # Looked up on the watch (opened by the first look: one request,
                # as a read; after the pause, what it received costs none).
                before = record
                record = yield from _refresh(name, record, clock, patience)
                crowd = _line_changes(before, record, intent.instance_id)
                if crowd > 1:
                    yield from _spread(name, clock, deadline, rng, crowd, took)
                    record = yield from _refresh(name, record, clock, patience, wait=0)
                continue
            yield from _pause(name, clock, deadline, rng, conflicts)
            record = yield from _read(name, patience)
        elif conflicts == 1 or watch_only:
            record = yield from _refresh(name, record, clock, patience)
        else:  # the watch, which a busy host may read late: once in a row
            record = yield from _read(name, patience)


def settle_turn(me: str, before: Record | None, handed: Record) -> Callable[[Record], float]:
    """For a mutex holder releasing a lock handed to it a moment ago (in the
    version ``handed``; ``before``: the version before it, None if not known):
    given the newest version, how long to wait for the next write (see
    :func:`_await_turn`), or 0 to release now. It waits while the instances
    that held the lock in ``before`` (the one that handed it over) are neither
    in line nor holding, for the join that such a greedy holder sends at once:
    releasing from a copy that has it avoids a conflict with it. A version that
    already has that join (it may have arrived with the hand-off) is released
    from at once. The caller bounds the wait (:data:`SETTLE` after the hand-off).

    ``before`` names the one that handed the lock over only if it is the
    version the hand-off replaced: the token the hand-off stamped for ``me``.
    A waiter out of view (:func:`~lockheed._queue.in_view`: behind a lockheed
    holder, nobody in line is labelled) last saw an older version, whose
    holder need not be the one that handed the lock over. It then waits
    while nobody in line began to ask after the hand-off (a line entry whose
    ``since`` is above that token: the greedy holder's join is one). Without
    a stamped token either, it waits for any version newer than ``handed``."""
    token = _stamped_token(handed, me)
    if before is not None and before.state is not None and token == _version(before):
        previous = frozenset(before.state.leases) - {me}

        def back(record: Record) -> float:
            if not previous or record.state is None:
                return 0.0
            present = set(record.state.leases) | {w.instance_id for w in read_queue(record.meta)}
            return 0.0 if previous & present else SETTLE

        return back
    if token is not None:
        stamped = token

        def joined_since(record: Record) -> float:
            line = read_queue(record.meta)
            return 0.0 if any(w.since is not None and w.since > stamped for w in line) else SETTLE

        return joined_since

    def waits(record: Record) -> float:
        return SETTLE if record.version == handed.version else 0.0

    return waits


def _await_turn(
    name: str,
    record: Record,
    clock: ServerClock,
    until: float,
    turn: Callable[[Record], float],
) -> Flow:
    """Before a release's write: while ``turn`` says others write first (how long
    to wait for their write, in seconds; 0: our turn), wait on the open watch
    (no request; none is opened) for the next version, until ``until`` at the
    latest; stop when no newer version comes within that while (those others
    are not writing). Returns the newest version seen."""
    while (gap := turn(record)) > 0:
        now = clock.monotonic()
        if now >= until:
            break
        try:
            newer = yield Watch(name, record.version, min(until, now + gap), quick=True, open=False)
        except LockBackendError:
            break
        if newer is None:
            return None
        if not isinstance(newer, Record):
            break
        record = newer
    return record


def _count_conflict(intent: Intent, conflicts: int) -> int:
    if conflicts >= MAX_CONFLICTS:
        raise LockConflict(f"lock {intent.name!r}: too many write conflicts", lock=intent.name)
    return conflicts + 1
