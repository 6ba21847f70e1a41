"""The pure core of shared locks and semaphores: who may enter, and who a release wakes.

Two lock kinds besides Go's mutex live in the same object and the same JSON
document, one lease per holder:

* ``lockType: "shared"``, a readers-writer lock: any number of *shared*
  holders at once, or one *exclusive* holder alone;
* ``lockType: "semaphore"``, at most ``limit`` holders at once (an exclusive
  acquirer, if any, is alone as on a shared lock).

What Go lockheed v0.5.3 would drop when it rewrites ``data.lock`` (it keeps
only ``name``, ``lockType``, ``leases`` and ``tags``) is kept in annotations,
which Go keeps: ``lockheed/limit`` (the semaphore's N), ``lockheed/exclusive``
(the instance ID of the exclusive holder) and ``lockheed/tokens`` (each
holder's fencing token, ``{"<instance ID>": 1234}``). Waiters line up in
``lockheed/queue`` (:mod:`lockheed._queue`), an exclusive waiter marked ``x``.

Decisions, each made from the stored object and the server's time bounds:

* **Who may enter.** A contender enters at once when nobody waits in line and
  it is compatible with the live holders (a shared one: no exclusive holder
  and fewer than ``limit`` holders; an exclusive one: no holder at all);
  otherwise it joins the line (one write) and waits on its watch. Its place
  is dated as a mutex waiter's (:func:`~lockheed._queue.place_of`): ahead of
  entries at the end of the line that began to ask later, so it also enters
  at once when, in that place, it would be among those that can enter now.
  So once an exclusive acquirer waits, shared ones that began to ask later
  line up behind it (writer preference) and it enters as soon as the
  holders before it have left; the shared ones ahead of it enter together.
  Neither side starves: the line is served in order. A waiter that the
  holders keep out sleeps through changes that leave it so
  (:func:`shared_still_behind`).
* **Who a release wakes.** A release removes its lease and, in the same
  write, gives a lease of at most :data:`~lockheed._core.CLAIM_WINDOW` and a
  fencing token to as many waiters from the head of the line as can now
  enter (the *admissible prefix*): one slot freed on a full semaphore admits
  one waiter, the last reader leaving admits the writer, a leaving writer
  admits the readers up to the next writer. Those waiters take the lock from
  their watch without writing; nobody else writes.
* **Releasing in turn.** A holder that releases soon after it got the lock
  waits on its open watch, without a request, for its turn
  (:func:`release_turn`): holders that came in before it leave first, and
  holders that just left join the line again first, so that several holders
  leaving and joining again at once do not meet each other's writes. The
  wait is bounded (:data:`TURN_GAP` per expected write, :func:`turn_cap` in
  all, never near the loss deadline) and decides nothing.
* **Fencing.** A holder's token is the resourceVersion that the write which
  made it a holder replaced (waiters admitted together share it). Every write
  that admits an exclusive holder comes after the writes that admitted every
  earlier holder, so its token is larger than all of theirs.
* **Failure.** As for the mutex (:mod:`lockheed._core`): every write is
  conditional on the resourceVersion; a lease is judged expired only on the
  earliest possible server time; a dead waiter given the lock holds the
  others up for at most ``CLAIM_WINDOW``; waiters at the head of the line
  that could enter but do not are presumed gone after ``CLAIM_WINDOW`` each
  and dropped. A Go reservation makes an acquire wait. A lock of another
  kind, or a semaphore with another limit, is refused with
  :class:`~lockheed.LockTypeError` and left as it is, unless the force
  condition matches (which then makes it ours, of our kind, dropping every
  other lease).

The ``decide_*`` functions have the signatures of :mod:`lockheed._core`'s and
run inside its flows (``acquire_flow(..., decide=decide_shared_acquire)``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from ._clock import ServerClock
from ._conditions import LockView
from ._core import (
    CLAIM_WINDOW,
    Accept,
    Decision,
    Intent,
    Refuse,
    Wait,
    Write,
    _reservation,
    _sync_tags,
    _without,
    release_start,
    token_of,
)
from ._errors import LockLost, LockStateError, LockTypeError
from ._queue import Waiter, place_of, queue_meta, read_queue
from ._state import MUTEX, NEVER, Lease, LockState, Record

__all__ = [
    "EXCLUSIVE_KEY",
    "LIMIT_KEY",
    "SEMAPHORE",
    "SHARED",
    "TOKENS_KEY",
    "SharedIntent",
    "admissible",
    "decide_shared_acquire",
    "decide_shared_release",
    "decide_shared_renew",
    "read_limit",
    "read_tokens",
    "release_turn",
    "shared_still_behind",
    "shared_view",
    "turn_cap",
]

SHARED: Final = "shared"
SEMAPHORE: Final = "semaphore"
KINDS: Final = (SHARED, SEMAPHORE)
LIMIT_KEY: Final = "lockheed/limit"
EXCLUSIVE_KEY: Final = "lockheed/exclusive"
TOKENS_KEY: Final = "lockheed/tokens"
# The largest semaphore limit (so that a limit is an ordinary JSON number).
MAX_LIMIT: Final = 1_000_000
# Above any fencing token: the place in the release order of a holder without one.
MAX_TOKEN: Final = 2**63
# A holder that releases within this long of getting the lock waits for its
# turn first (release_turn), for at most TURN_CAP: several holders that came in
# together, or one after another, leave together too, and each leaver joins
# the line again at once; released in turn, their writes do not collide.
TURN_RECENT: Final = 0.05
TURN_CAP: Final = 1.0
# How long such a release waits for a write it expects (a leaver's join, the
# release of the holder before it) before it writes anyway; a holder waiting
# behind others waits this much longer per holder before it, so that, when
# one does not come, they do not all write at once.
TURN_GAP: Final = 0.1
# ...and stops waiting this long before its loss deadline at the latest (a
# lock let in from the line holds a claim window's lease until it renews).
TURN_MARGIN: Final = 0.5


@dataclass(frozen=True)
class SharedIntent(Intent):
    """What one instance of a shared lock or semaphore asks for."""

    lock_type: str = SHARED
    exclusive: bool = False
    limit: int | None = None  # a semaphore's N; None for a readers-writer lock

    def waiter(self, since: int | None = None) -> Waiter:
        return Waiter(
            self.instance_id,
            self.duration,
            self.tags,
            self.reset_tags,
            exclusive=self.exclusive,
            since=since,
        )


def check_limit(limit: object) -> int:
    """A semaphore's limit: an integer from 1; ValueError otherwise."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"a semaphore's limit must be an integer from 1 to {MAX_LIMIT}: {limit!r}")
    return limit


def read_limit(meta: Mapping[str, str]) -> int | None:
    """The limit stored with a semaphore, or None if missing or unreadable."""
    try:
        return check_limit(int(meta.get(LIMIT_KEY, "")))
    except ValueError:
        return None


def read_tokens(meta: Mapping[str, str]) -> dict[str, int]:
    """Each holder's fencing token as stored (unreadable entries left out)."""
    try:
        raw = json.loads(meta.get(TOKENS_KEY) or "{}")
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if isinstance(v, int) and not isinstance(v, bool)}


def _tokens_meta(tokens: Mapping[str, int]) -> dict[str, str | None]:
    if not tokens:
        return {TOKENS_KEY: None}
    return {TOKENS_KEY: json.dumps(dict(sorted(tokens.items())), separators=(",", ":"))}


def admissible(line: tuple[Waiter, ...], holders: int, exclusive: bool, limit: int | None) -> int:
    """How many waiters from the head of ``line`` can enter together now, given
    ``holders`` live holders (``exclusive``: one of them is exclusive)."""
    if exclusive:
        return 0
    n = 0
    for w in line:
        if w.exclusive:
            return 1 if holders == 0 and n == 0 else n
        if limit is not None and holders + n >= limit:
            break
        n += 1
    return n


@dataclass(frozen=True)
class _Held:
    """The live holders of a shared lock, judged at the earliest server time."""

    leases: tuple[Lease, ...]
    exclusive: str | None
    tokens: dict[str, int]

    def others(self, me: str) -> list[Lease]:
        return [le for le in self.leases if le.instance_id != me]


def _held(record: Record, state: LockState, earliest: datetime) -> _Held:
    live = tuple(state.live_leases(earliest))
    ids = {le.instance_id for le in live}
    ex = record.meta.get(EXCLUSIVE_KEY)
    tokens = {k: v for k, v in read_tokens(record.meta).items() if k in ids}
    return _Held(live, ex if ex in ids else None, tokens)


def shared_view(record: Record, earliest: datetime) -> LockView:
    """What a condition sees of a lock object (any kind)."""
    state = record.state
    if state is None:
        return LockView(frozenset(), True)
    live = state.live_leases(earliest)
    return LockView(frozenset(state.tags), bool(live), len(live), state.lock_type or MUTEX)


def _kind_problem(intent: SharedIntent, record: Record) -> LockStateError | None:
    state, name = record.state, intent.name
    if state is None:
        return LockStateError(f"lock {name!r}: {record.error}", lock=name)
    stored = state.lock_type or MUTEX
    what = "an exclusive" if intent.exclusive else "a shared"
    if intent.lock_type == SEMAPHORE:
        what = f"a semaphore (limit {intent.limit})"
    if stored != intent.lock_type:
        return LockTypeError(
            f"lock {name!r} is a {stored!r} lock; {what} acquire needs a "
            f"{intent.lock_type!r} lock (the type is fixed when the lock is created)",
            lock=name,
        )
    if stored == SEMAPHORE:
        limit = read_limit(record.meta)
        if limit is None:
            return LockStateError(
                f"semaphore {name!r} has no valid limit ({LIMIT_KEY}: "
                f"{record.meta.get(LIMIT_KEY)!r})",
                lock=name,
            )
        if limit != intent.limit:
            return LockTypeError(
                f"semaphore {name!r} has limit {limit}, not {intent.limit}", lock=name
            )
    return None


def _kind_meta(intent: SharedIntent) -> dict[str, str | None]:
    if intent.lock_type == SEMAPHORE:
        return {LIMIT_KEY: str(intent.limit)}
    return {LIMIT_KEY: None}


def _blocking(intent: SharedIntent, held: _Held) -> Wait:
    """Wait for the holders that keep us out: a change, or the earliest expiry."""
    others = held.others(intent.instance_id)
    first = min(others, key=lambda le: le.expires)
    who = held.exclusive or first.instance_id
    until = None if first.expires >= NEVER else first.expires
    return Wait(until, who, first.expires, "held")


def decide_shared_acquire(
    intent: SharedIntent,
    record: Record | None,
    earliest: datetime,
    latest: datetime,
    token: int | None = None,
    free_for: float = 0.0,
    join: bool = True,
    since: int | None = None,
) -> Decision:
    """Decide an acquire of a shared lock or semaphore (see the module's rules).

    The arguments are :func:`lockheed._core.decide_acquire`'s; ``free_for`` is
    how long the caller has seen waiters ahead of it able to enter without
    entering (with the same waiters ahead). ``since`` dates the newcomer's
    place as for a mutex (:func:`~lockheed._queue.place_of`): it joins ahead
    of the entries at the end of the line that began to ask later, exclusive
    or not (losing a race to join never costs a turn, and a writer's entry
    is never passed by a reader that began to ask after it), and it enters at
    once when, in that place, it would be among those that can enter now.
    """
    me, name = intent.instance_id, intent.name
    expires = intent.expiry(latest)
    mine = Lease(me, expires)
    if record is None:
        tags = _sync_tags((), intent.tags, intent.reset_tags)
        fresh = LockState(name, intent.lock_type, tags=tags)
        return Write(None, fresh.with_leases([]), _kind_meta(intent))
    busy = _reservation(record, me, earliest)
    if busy is not None:
        return busy
    if token is not None and read_tokens(record.meta).get(me) != token:
        # Not the grant it was kept for (others held in between, then this
        # instance was admitted anew): that token is stale.
        token = None
    forced = intent.force is not None and intent.force.matches(shared_view(record, earliest))
    state = record.state
    problem = _kind_problem(intent, record)
    if problem is not None and not forced:
        return Refuse(problem)
    if state is None or problem is not None:
        state = LockState(name, intent.lock_type)
    held = _held(record, state, earliest)
    queue = read_queue(record.meta)
    place = next((i for i, w in enumerate(queue) if w.instance_id == me), None)
    others = held.others(me)
    ours = len(others) < len(held.leases)
    limit = intent.limit if intent.lock_type == SEMAPHORE else None

    def take(line: tuple[Waiter, ...], keep: list[Lease]) -> Write:
        assert state is not None and record is not None
        tags = _sync_tags(state.tags, intent.tags, intent.reset_tags)
        new = replace(state, name=name, lock_type=intent.lock_type, tags=tags)
        new = new.with_leases([*keep, mine])
        stamp = token if token is not None and ours else token_of(record)
        ids = {le.instance_id for le in keep}
        tokens = {k: v for k, v in held.tokens.items() if k in ids}
        tokens[me] = stamp
        meta = _tokens_meta(tokens)
        exclusive = me if intent.exclusive else held.exclusive if keep else None
        meta[EXCLUSIVE_KEY] = exclusive
        meta.update(_kind_meta(intent))
        if line != queue:
            meta.update(queue_meta(line))
        return Write(record.version, new, meta, expires=expires, token=stamp)

    if forced:
        return take(_without(queue, me), [])
    if ours:
        stamped = held.tokens.get(me)
        if token is None and stamped is not None and place is None:
            mine_now = next(le for le in held.leases if le.instance_id == me)
            return Accept(stamped, mine_now.expires)  # handed to us, or our write landed
        return take(_without(queue, me), others)
    fits = held.exclusive is None and (
        not others if intent.exclusive else limit is None or len(others) < limit
    )
    if place is None:
        joins_at = place_of(queue, since) if intent.fair else len(queue)
        line = (*queue[:joins_at], intent.waiter(since), *queue[joins_at:])
        ready = admissible(line, len(others), held.exclusive is not None, limit)
        if (fits and not intent.fair) or joins_at < ready:
            return take(queue, others)
        if join and intent.fair:
            return Write(record.version, state, queue_meta(line))
        if others and not fits:
            return _blocking(intent, held)
        return Wait(None, queue[0].instance_id, None, "queued", after=CLAIM_WINDOW * len(queue))
    ready = admissible(queue, len(others), held.exclusive is not None, limit)
    if place < ready:
        return take(_without(queue, me), others)
    if ready == 0:
        return _blocking(intent, held)
    patience = ready * CLAIM_WINDOW
    if free_for < patience:
        return Wait(None, queue[0].instance_id, None, "queued", after=patience - free_for)
    # Those at the head could enter and did not: presumed gone, they leave the line.
    line = queue[ready:]
    if place - ready < admissible(line, len(others), held.exclusive is not None, limit):
        return take(_without(line, me), others)
    return Write(record.version, state, queue_meta(line))


def decide_shared_renew(
    intent: SharedIntent,
    record: Record | None,
    earliest: datetime,
    latest: datetime,
    token: int | None,
) -> Decision:
    """Move our lease's expiry forward (other holders' live leases kept, expired
    ones dropped), or refuse with :class:`~lockheed.LockLost`."""
    me, name = intent.instance_id, intent.name
    if record is None:
        return Refuse(LockLost(f"lock {name!r}: its object was deleted", lock=name))
    state = record.state
    if state is None:
        return Refuse(LockLost(f"lock {name!r}: stored state became unreadable", lock=name))
    held = _held(record, state, earliest)
    lease = state.leases.get(me)
    why = None
    if state.lock_type != intent.lock_type:
        why = f"it became a {state.lock_type!r} lock"
    elif lease is None or not lease.live(earliest):
        why = "our lease expired or was removed"
    elif intent.exclusive and held.exclusive != me:
        why = "it is no longer held exclusively by us"
    elif held.exclusive not in (None, me):
        why = f"taken over exclusively by {held.exclusive}"
    if why is not None:
        others = [le.instance_id for le in held.others(me)]
        holder = held.exclusive if held.exclusive != me else (others[0] if others else None)
        return Refuse(LockLost(f"lock {name!r}: {why}", lock=name, holder=holder))
    expires = intent.expiry(latest)
    keep = held.others(me)
    new = state.with_leases([*keep, Lease(me, expires)])
    tokens = dict(held.tokens)
    if token is not None:
        tokens[me] = token
    meta = _tokens_meta(tokens)
    return Write(record.version, new, meta, expires=expires)


def decide_shared_release(
    intent: SharedIntent,
    record: Record | None,
    earliest: datetime,
    token: int | None,
    latest: datetime | None = None,
) -> Decision:
    """Remove our lease and our place in line; in the same write, admit as many
    waiters from the head of the line as can now enter (each a lease of at most
    ``CLAIM_WINDOW`` from ``latest`` and the fencing token for it)."""
    me = intent.instance_id
    start = release_start(me, record, earliest)
    if not isinstance(start, tuple):
        return start
    record, state, queue, line = start
    held = _held(record, state, earliest)
    rest = held.others(me)
    exclusive = held.exclusive if held.exclusive != me else None
    tags = _sync_tags(state.tags, intent.tags, intent.reset_tags)
    tokens = {k: v for k, v in held.tokens.items() if k != me}
    limit = read_limit(record.meta) if state.lock_type == SEMAPHORE else None
    meta: dict[str, str | None] = {}
    if state.lock_type in KINDS and (state.lock_type != SEMAPHORE or limit is not None):
        ready = admissible(line, len(rest), exclusive is not None, limit)
        now = latest if latest is not None else earliest
        for w in line[:ready]:
            span = timedelta(seconds=CLAIM_WINDOW)
            if w.duration is not None:
                span = min(span, w.duration)
            rest.append(Lease(w.instance_id, now + span))
            tokens[w.instance_id] = token_of(record)
            tags = _sync_tags(tags, w.tags, w.reset_tags)
            if w.exclusive:
                exclusive = w.instance_id
        line = line[ready:]
    meta.update(_tokens_meta(tokens))
    meta[EXCLUSIVE_KEY] = exclusive
    if line != queue:
        meta.update(queue_meta(line))
    return Write(record.version, replace(state, tags=tags).with_leases(rest), meta)


def _first_expiry(record: Record, me: str, earliest: datetime) -> datetime | None:
    """When the first live lease of another than ``me`` in ``record`` ends (None: none)."""
    state = record.state
    if state is None:
        return None
    ends = [le.expires for le in state.live_leases(earliest) if le.instance_id != me]
    return min(ends, default=None)


def shared_still_behind(
    clock: ServerClock, intent: SharedIntent, seen: Record
) -> Callable[[Record], bool]:
    """For a waiter in line that the holders keep out (``seen``, the version its
    wait was decided on): whether a newer version changes nothing for it, so
    that its watch need not wake it. True while its entry is in line, nobody
    at the head of the line can enter, and no holder's lease ends before the
    first end it waits for (``seen``'s): its decision would be the same wait,
    or one that ends later, which its watch's time (the earlier end) covers.
    The head of the line becoming able to enter (the last holder gone, a
    place freed, a writer ahead leaving the line), a shorter lease (a holder
    let in with a claim window), its entry gone, or another kind of lock all
    wake it. The holders coming and going behind a waiting writer do not."""
    me = intent.instance_id
    limit = intent.limit if intent.lock_type == SEMAPHORE else None
    earliest, _ = clock.bounds()
    first = _first_expiry(seen, me, earliest)

    def still(record: Record) -> bool:
        state = record.state
        if first is None or state is None or state.lock_type != intent.lock_type:
            return False
        queue = read_queue(record.meta)
        if all(w.instance_id != me for w in queue):
            return False
        earliest, _ = clock.bounds()
        now = _held(record, state, earliest)
        others = now.others(me)
        if admissible(queue, len(others), now.exclusive is not None, limit) != 0:
            return False
        ends = _first_expiry(record, me, earliest)
        return ends is not None and ends >= first

    return still


def turn_cap(intent: SharedIntent, record: Record, earliest: datetime) -> float:
    """How long at most (seconds) a release soon after getting the lock waits
    for its turn (:func:`release_turn`): :data:`TURN_CAP`, and
    :data:`TURN_GAP` more for each live holder that came in before it, so that
    holders that came in together do not all stop waiting at once."""
    state = record.state
    if state is None:
        return 0.0
    tokens = read_tokens(record.meta)
    me = intent.instance_id
    mine = (tokens.get(me, MAX_TOKEN), me)
    live = [le.instance_id for le in state.live_leases(earliest) if le.instance_id != me]
    before = sum((tokens.get(who, MAX_TOKEN), who) < mine for who in live)
    return TURN_CAP + TURN_GAP * before


def release_turn(
    clock: ServerClock, intent: SharedIntent, seen: Iterable[Record | None]
) -> Callable[[Record], float]:
    """For a holder about to release soon after it got the lock: whether others
    write first, given the newest version: how long (seconds) to wait for
    their next write at most, or 0 when it is our turn. ``seen`` are the
    versions it knew when it got the lock (the one that let it in, and the
    one before); the holders of every version it is given count too.

    Holders leave in the order they came in (fencing token, then instance ID):
    while a holder that came in before us is still in, we wait for a change,
    :data:`TURN_GAP` for each such holder; and a holder of ``seen`` that has
    left since, and is neither in line nor holding again, is about to join
    the line again (a greedy worker does at once): we wait for that join,
    until :data:`TURN_GAP` after we first saw it gone, unless as many
    newcomers as such leavers have come (in line or holding, in none of the
    versions we knew): a worker that asks next for the other side of a
    readers-writer lock comes back under another instance ID. The caller
    bounds the whole wait (:func:`lockheed._core._await_turn`), so a holder
    that works on, or a leaver that does not come back, costs at most that.
    Waiting only orders writes: nothing is decided from it."""
    me = intent.instance_id
    earliest, _ = clock.bounds()
    known: set[str] = set()
    present: set[str] = {me}  # who held or waited in the versions we knew
    for record in seen:
        if record is not None and record.state is not None:
            known |= {le.instance_id for le in record.state.live_leases(earliest)}
            present |= set(record.state.leases) | {w.instance_id for w in read_queue(record.meta)}
    present |= known
    known.discard(me)
    gone_since: dict[str, float] = {}
    arrived = 0  # newcomers that came while a leaver was not back

    def waits(record: Record) -> float:
        nonlocal arrived
        state = record.state
        if state is None or me not in state.leases:
            return 0.0
        earliest, _ = clock.bounds()
        tokens = read_tokens(record.meta)
        never = MAX_TOKEN
        mine = (tokens.get(me, never), me)
        live = {le.instance_id for le in state.live_leases(earliest)}
        known.update(live - {me})
        queued = {w.instance_id for w in read_queue(record.meta)}
        now = clock.monotonic()
        left = 0.0
        missing = 0
        for who in known:
            if who in live or who in queued:
                gone_since.pop(who, None)
                continue
            # Dated from the first version that showed it gone, also while we
            # waited for those before us: one that does not come back then
            # costs a TURN_GAP once, not once more for each holder in turn.
            first = gone_since.setdefault(who, now)
            left = max(left, first + TURN_GAP - now)
            missing += 1
        # Newcomers (in line or holding, in no version we knew) that came while
        # leavers were not back: as many as those leavers, and their joins have
        # come, under other instance IDs (a worker asking next for the other
        # side of a readers-writer lock).
        fresh = (live | queued) - present
        present.update(fresh)
        if missing:
            arrived += len(fresh)
        before = sum((tokens.get(who, never), who) < mine for who in live if who != me)
        if before:
            return TURN_GAP * (1 + before)
        if missing and arrived >= missing:
            return 0.0
        return left

    return waits
