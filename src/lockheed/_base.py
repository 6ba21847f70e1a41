"""What the sync :class:`~lockheed.Lock` and the :class:`~lockheed.AsyncLock` share.

Directives, properties and the bookkeeping of holding a lock live here and do
no I/O; the two shells (``_sync/lock.py``, generated from ``_async/lock.py``)
only run the core's flows against their locker and hold their mutex.
Directives and ``acquire`` check their arguments before any request (the
ranges are in :mod:`lockheed._limits`), and a lock refuses a locker of the
other API (sync or asyncio) when it is made.

Failure semantics of holding: while held with a duration, the lock has a loss
deadline on this host's monotonic clock, the send time of the last successful
write plus the duration minus :func:`loss_margin` (or plus a leader elector's
renew deadline, ``_loss_after``, when that is earlier). ``held`` turns False at
that deadline even if no renewal could be made. A loss is declared once: the error
is kept in ``lost``, renewal is cancelled, event 516 is emitted and every
``on_lost`` callback is called (a callback that raises is reported as an event
and does not stop the others). Observers (:mod:`lockheed._observe`: metrics,
Kubernetes Events) are told of each acquire, release and loss, and change nothing.
"""

from __future__ import annotations

import dataclasses
import inspect
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from . import _core, _observe, _shared_core
from ._clock import ServerClock
from ._conditions import Condition
from ._core import Acquired, Intent, Released, Replace, Sleep, Watch, loss_margin
from ._errors import LockError, LockLost, LockNotHeld
from ._events import Event, EventCode, EventHandler, emit
from ._limits import (
    MIN_DURATION,
    MIN_RENEW_INTERVAL,
    check_locker,
    check_renewal,
    check_timeout,
    to_timedelta,
)
from ._schedule import DueQueue
from ._shared_core import SEMAPHORE, SHARED, SharedIntent, check_limit
from ._state import MUTEX, Record

__all__ = ["MODES", "LockBase", "StopSignal", "loss_margin"]

#: A lock's modes: a Go mutex (the default), or a shared lock's shared or
#: exclusive side (:mod:`lockheed._shared_core`); a semaphore is its own class.
MODES = (MUTEX, "shared", "exclusive")

# While a stop signal is given, watches and sleeps are cut into pieces this
# long so the signal is noticed.
STOP_CHECK = 1.0
# A failed renewal is tried again after at most this long (sooner for short
# renew intervals), and never later than the loss deadline.
RETRY_AFTER = 1.0
# The shortest pause between two looks at a lock whose renewal is under way or
# whose deadline passed, so the renewer never spins.
MIN_PAUSE = 0.05
# A renewal may go out up to this share of its renew interval early (at most
# EARLY_CAP seconds), with the renewals of other locks of the same locker that
# are due, all in one batch; renewed together, they stay due together. A lock
# whose loss deadline is less than BATCH_LEAD away (its renewals failing, or
# a short lease) is renewed alone: a batch shares its earliest deadline.
EARLY_SHARE = 0.05
EARLY_CAP = 1.0
BATCH_LEAD = 5.0
# The most locks one renewal tick renews together.
MAX_BATCH = 32
_L = TypeVar("_L", bound="LockBase")


class StopSignal(Protocol):
    """A ``threading.Event`` or ``asyncio.Event``: only ``is_set`` is used."""

    def is_set(self) -> bool: ...


def due_renewals(queue: DueQueue[Any], now: float) -> tuple[list[Any], float | None]:
    """The renewers' next tick (monotonic ``now``): a lock that is due, and the
    locks of its locker that may be renewed with it (:meth:`LockBase._renew_early`),
    at most :data:`MAX_BATCH`; else ``[]`` and how long until one is due."""
    return queue.pop_batch(
        now, lambda lock: lock._renew_early(now), lambda lock: id(lock.locker), MAX_BATCH, EARLY_CAP
    )


class LockBase:
    """Configuration and state of one lock instance (one instance ID)."""

    def __init__(self, name: str, locker: Any, *, instance_id: str | None = None):
        # The shell's own acquire says which API it is: sync Lock or AsyncLock.
        asynchronous = inspect.iscoroutinefunction(getattr(type(self), "acquire", None))
        check_locker(locker, asynchronous, type(self).__name__)
        locker.object_name(name)  # validate before any request
        self.name = name
        self.locker = locker
        self._clock: ServerClock = locker.clock
        self.instance_id = instance_id or str(uuid.uuid4())
        self._duration: timedelta | None = None
        self._renew_interval: timedelta | None = None
        self._tags: tuple[str, ...] = ()
        self._reset_tags = False
        self._force: Condition | None = None
        self._fair = True
        self._mode = MUTEX  # MUTEX, "shared", "exclusive", or SEMAPHORE (a Semaphore)
        self._limit: int | None = None
        self._stop: StopSignal | None = None
        self._on_event: EventHandler | None = None
        self._on_lost: list[Callable[[LockLost], Any]] = []
        self._record: Record | None = None
        self._record_at: float | None = None  # monotonic time _record was received
        self._token: int | None = None
        self._expires: datetime | None = None
        self._deadline: float | None = None  # monotonic loss deadline; None = never
        self._sent = 0.0  # monotonic send time of the last write that extended our lease
        # The peer view (Record.peer_view) of our last write while held, and the
        # send time of our first write in a row with that view: a peer that
        # times us by the object's content (client-go) counts from that one.
        self._peer_view: str | None = None
        self._peer_since = 0.0
        self._claim_by: float | None = None  # renew by then: the lock was handed to us
        self._handed_at: float | None = None  # when the lock held now was handed to us
        # The versions we knew as we got the lock held now (shared kinds' release order).
        self._got_from: tuple[Record | None, ...] = ()
        self._got_at = 0.0  # monotonic time the acquire that got it returned
        self._active = False  # acquired and not released
        self._lost: LockLost | None = None
        # Set by leader election: a renew deadline shorter than the lease, and an
        # observer of who holds the lock while an acquire waits (told with each
        # watch, so it costs no request).
        self._loss_after: timedelta | None = None
        self._on_wait: Callable[[str | None], Any] | None = None
        # Set by ``lockheed run --verbose``: told each watch (holder and expiry).
        self._on_watch: Callable[[Watch], Any] | None = None
        # For observers (lockheed._observe): when the acquire began, and the object
        # that a forced acquire's write replaced (whom it took the lock from).
        self._began = 0.0
        self._replaced: Record | None = None

    def __repr__(self) -> str:
        state = "held" if self.held else "lost" if self._lost else "free"
        return (
            f"{type(self).__name__}({self.name!r}, {self.locker!r}, {state}, "
            f"instance_id={self.instance_id!r})"
        )

    # ------------------------------------------------------------ directives

    def with_duration(self: _L, duration: float | timedelta | None) -> _L:
        """Lease length for each acquire and renewal; 0 or None: never expires.

        Otherwise between 1 s and 106751 days; raises ValueError outside that
        range, or when the renew interval is not shorter than the new duration
        minus :func:`loss_margin`.
        """
        value = to_timedelta(duration, "duration", minimum=MIN_DURATION, zero="never expires")
        check_renewal(value, self._renew_interval, loss_margin)
        self._duration = value
        return self

    def with_renew_interval(self: _L, interval: float | timedelta | None) -> _L:
        """Renew in the background this often while held; 0 or None: never.

        Otherwise between 0.05 s and 106751 days, and shorter than the duration
        minus :func:`loss_margin` (checked whichever directive comes first).
        """
        value = to_timedelta(
            interval, "renew interval", minimum=MIN_RENEW_INTERVAL, zero="never renew"
        )
        check_renewal(self._duration, value, loss_margin)
        self._renew_interval = value
        return self

    def with_tags(self: _L, tags: Iterable[str]) -> _L:
        """Tags to add to the lock (or, with ``with_reset_tags``, to set)."""
        tags = (tags,) if isinstance(tags, str) else tuple(tags)
        if not all(isinstance(t, str) and t for t in tags):
            raise ValueError("tags must be non-empty strings")
        self._tags = tuple(dict.fromkeys(tags))
        return self

    def with_reset_tags(self: _L, reset: bool = True) -> _L:
        """Make the lock's tags exactly ``with_tags``' on acquire and release."""
        self._reset_tags = reset
        return self

    def with_force(self: _L, condition: Condition | None) -> _L:
        """Take the lock over, even from a live holder, when ``condition`` matches."""
        if condition is not None and not isinstance(condition, Condition):
            raise TypeError("with_force takes a Condition")
        self._force = condition
        return self

    def with_fair(self: _L, fair: bool = True) -> _L:
        """Wait in line (the default): first come, first served, each release
        handing the lock to the first waiter. ``False``: race for the lock
        whenever it is free, as Go lockheed's contenders do."""
        self._fair = bool(fair)
        return self

    def with_mode(self: _L, mode: str) -> _L:
        """``"mutex"`` (the default: Go lockheed's lock type), ``"shared"`` or
        ``"exclusive"``: a holder of a shared (readers-writer) lock, which many
        shared holders hold at once, or one exclusive holder alone. A shared lock
        is not a mutex: its type is fixed when it is first created, and an
        acquire of the other kind raises :class:`~lockheed.LockTypeError`.
        Lease lockers hold one holder only: ValueError there."""
        if self._mode == SEMAPHORE:
            raise ValueError(f"{type(self).__name__} has no mode: it is a semaphore")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}: {mode!r}")
        if self._active and mode != self._mode:
            raise ValueError(f"lock {self.name!r}: release it before changing its mode")
        if mode != MUTEX:
            self._check_sharable()
        self._mode = mode
        return self

    def with_shared(self: _L) -> _L:
        """Hold the lock shared with other shared holders (a reader): ``with_mode("shared")``."""
        return self.with_mode("shared")

    def with_exclusive(self: _L) -> _L:
        """Hold a shared lock alone (a writer): ``with_mode("exclusive")``."""
        return self.with_mode("exclusive")

    def _check_sharable(self) -> None:
        if getattr(self.locker, "kind", "") == "Lease":
            raise ValueError(
                f"lock {self.name!r}: a Lease holds one holder; shared locks and "
                "semaphores need a ConfigMap (or Memory) locker"
            )

    def _set_limit(self, limit: object) -> None:
        """Make this lock a semaphore of ``limit`` holders (the Semaphore classes)."""
        self._limit = check_limit(limit)
        self._check_sharable()
        self._mode = SEMAPHORE

    @property
    def mode(self) -> str:
        """``"mutex"``, ``"shared"``, ``"exclusive"`` or ``"semaphore"``."""
        return self._mode

    def with_stop(self: _L, stop: StopSignal | None) -> _L:
        """A signal (Go's context) that aborts a waiting acquire and stops renewal."""
        if stop is not None and not callable(getattr(stop, "is_set", None)):
            raise TypeError("with_stop takes an Event (anything with is_set())")
        self._stop = stop
        return self

    def with_event_handler(self: _L, handler: EventHandler | None) -> _L:
        """Receive every :class:`~lockheed.Event` of this lock."""
        self._on_event = handler
        return self

    def on_lost(self: _L, callback: Callable[[LockLost], Any]) -> _L:
        """Call ``callback(error)`` when the lock is lost while held."""
        self._on_lost.append(callback)
        return self

    # ------------------------------------------------------------ properties

    @property
    def held(self) -> bool:
        """True while acquired, not lost, and before the loss deadline."""
        if not self._active or self._lost is not None:
            return False
        return self._deadline is None or self._clock.monotonic() < self._deadline

    @property
    def fencing_token(self) -> int | None:
        """Strictly increases each time the lock changes hands; None when never held."""
        return self._token

    @property
    def expires_at(self) -> datetime | None:
        """Our lease's expiry as written (server time), while acquired."""
        return self._expires if self._active else None

    @property
    def lost(self) -> LockLost | None:
        """Why the lock was lost, if it was lost while held."""
        return self._lost

    # ------------------------------------------------------------ bookkeeping

    def _intent(self) -> Intent:
        if self._mode != MUTEX:
            return SharedIntent(
                self.name,
                self.instance_id,
                self._duration,
                self._tags,
                self._reset_tags,
                self._force,
                self._fair,
                lock_type=SEMAPHORE if self._mode == SEMAPHORE else SHARED,
                exclusive=self._mode == "exclusive",
                limit=self._limit,
            )
        return Intent(
            self.name,
            self.instance_id,
            self._duration,
            self._tags,
            self._reset_tags,
            self._force,
            self._fair,
        )

    def _acquire_flow(self, deadline: float | None) -> _core.Flow:
        intent, clock, cached_at = self._intent(), self._clock, self._record_at
        if self._mode == MUTEX:
            return _core.acquire_flow(
                intent, clock, deadline, self._record, self._held_token(), cached_at=cached_at
            )
        return _core.acquire_flow(
            intent,
            clock,
            deadline,
            self._record,
            self._held_token(),
            decide=_shared_core.decide_shared_acquire,
            cached_at=cached_at,
            behind=_shared_core.shared_still_behind,
            watch_only=True,
        )

    def _renew_flow(self, token: int) -> _core.Flow:
        intent, clock = self._intent(), self._clock
        if self._mode == MUTEX:
            return _core.renew_flow(intent, clock, self._record, token)
        return _core.renew_flow(
            intent, clock, self._record, token, decide=_shared_core.decide_shared_renew
        )

    def _release_flow(
        self, record: Record | None, token: int | None, settle_until: float | None = None
    ) -> _core.Flow:
        intent, clock = self._intent(), self._clock
        if self._mode == MUTEX:
            settle = None
            if settle_until is not None and len(self._got_from) == 2:
                before, handed = self._got_from
                if handed is not None:
                    settle = _core.settle_turn(intent.instance_id, before, handed)
            return _core.release_flow(
                intent, clock, record, token, settle_until=settle_until, turn=settle
            )
        assert isinstance(intent, SharedIntent)
        turn, until = None, None
        now = clock.monotonic()
        if record is not None and self._active and now - self._got_at <= _shared_core.TURN_RECENT:
            # Released soon after it was got: in turn with the holders it came in with.
            turn = _shared_core.release_turn(clock, intent, self._got_from)
            until = now + _shared_core.turn_cap(intent, record, clock.bounds()[0])
            if self._deadline is not None:  # the write goes well before the loss deadline
                until = min(until, self._deadline - _shared_core.TURN_MARGIN)
        return _core.release_flow(
            intent,
            clock,
            record,
            token,
            decide=_shared_core.decide_shared_release,
            settle_until=until,
            turn=turn,
            watch_only=True,
        )

    def _event(self, code: EventCode, message: str, error: BaseException | None = None) -> None:
        emit(self._on_event, Event(code, self.name, self.instance_id, message, error))

    def _acquire_deadline(self, blocking: bool, timeout: float | None) -> float | None:
        timeout = check_timeout(timeout)
        now = self._clock.monotonic()
        self._began, self._replaced = now, None  # observers: the wait; a forced write's victim
        if not blocking:
            return now
        return None if timeout is None else now + timeout

    def _guard_effect(self, effect: Any) -> Any:
        """Check the stop signal before an effect; cut long waits while one is set.
        Tell the waiting observer who holds the lock before each watch."""
        if isinstance(effect, Watch) and not effect.quick:
            watched = self._on_wait is not None or self._on_watch is not None
            if watched and (effect.unless is not None or effect.view is not None):
                # observers want every change of holder
                effect = dataclasses.replace(effect, unless=None, view=None)
            if self._on_wait is not None:
                self._on_wait(effect.holder)
            if self._on_watch is not None:
                self._on_watch(effect)
        if self._force is not None and isinstance(effect, Replace):
            self._replaced = effect.base  # observers: whom a forced write takes it from
        stop = self._stop
        if stop is None:
            return effect
        if stop.is_set():
            raise LockError(f"lock {self.name!r}: stopped", lock=self.name)
        if isinstance(effect, Watch) and effect.view is not None:
            # cut into pieces, a wait watching only its own view would read at each
            effect = dataclasses.replace(effect, view=None)
        if isinstance(effect, (Watch, Sleep)):
            cap = self._clock.monotonic() + STOP_CHECK
            if effect.until is None or effect.until > cap:
                return dataclasses.replace(effect, until=cap)
        return effect

    def _held_token(self) -> int | None:
        """The token to keep when acquiring again while held."""
        return self._token if self.held else None

    def _hold(self, record: Record, expires: datetime | None, sent: float) -> None:
        """Hold after a write of ours sent at ``sent`` (or a hand-off seen then).

        A write that a peer timing us by the object's content cannot tell from
        our write before (the same ``peer_view``: a Lease renewed within the
        same second of ``renewTime``, to client-go) extends nothing for that
        peer: the loss deadline then counts from the first write of that view."""
        self._record, self._record_at = record, self._clock.monotonic()
        self._expires = expires
        self._sent = sent
        self._claim_by = None
        view = record.peer_view
        if view is None or view != self._peer_view:
            self._peer_since = sent
        self._peer_view = view
        since = self._peer_since
        if self._duration is None:
            self._deadline = None
        else:
            self._deadline = since + self._duration.total_seconds() - loss_margin(self._duration)
        self._deadline = self._capped(self._deadline, since)

    def _capped(self, deadline: float | None, sent: float) -> float | None:
        """``deadline``, or earlier: a renew deadline (``_loss_after``) after ``sent``."""
        if self._loss_after is None:
            return deadline
        cap = sent + self._loss_after.total_seconds()
        return cap if deadline is None else min(deadline, cap)

    def _acquired(self, got: Acquired) -> int:
        self._token = got.token
        if not self._active or self._lost is not None:
            self._peer_view = None  # taken anew: nothing of ours before it counts
        self._active, self._lost = True, None
        self._hold(got.record, got.expires, got.sent)
        early = got.sent - self._peer_since  # taken again while held, in the same view
        deadline = None if got.deadline is None else got.deadline - early
        self._deadline = self._capped(deadline, self._peer_since)
        self._handed_at = got.sent if got.handed else None
        self._got_from = (got.before, got.record)  # who held it as we came in
        self._got_at = self._clock.monotonic()
        if got.handed and self._deadline is not None:
            # A hand-off's short lease becomes a full one with a renewal soon.
            self._claim_by = got.sent + (self._deadline - got.sent) / 2
        self._event(EventCode.ACQUIRE_OK, f"acquired, fencing token {self._token}")
        if (obs := _observe.of(self.locker)) is not None:
            obs.acquired(
                self,
                self._clock.monotonic() - self._began,
                got.handed,
                _observe.taken_from(self, self._replaced, got.handed),
            )
        if self._renew_interval is not None:
            self._event(EventCode.RENEWAL_STARTED, f"renewing every {self._renew_interval}")
        assert self._token is not None
        return self._token

    def _check_renewable(self) -> int:
        if not self._active:
            raise LockNotHeld(f"lock {self.name!r} is not held", lock=self.name)
        if self._lost is not None:
            raise self._lost
        assert self._token is not None
        return self._token

    def _next_due(self) -> float | None:
        """When the renewal thread or task should next look at this lock: one renew
        interval after the last renewal was *sent* (the loss deadline counts from
        then too), or at the loss deadline."""
        if not self._active or self._lost is not None:
            return None
        dues = [t for t in (self._deadline, self._claim_by) if t is not None]
        if self._renew_interval is not None:
            dues.append(self._sent + self._renew_interval.total_seconds())
        return min(dues) if dues else None

    def _retry_due(self) -> float | None:
        """When to look again after a failed renewal, or while the lock is busy."""
        if not self._active or self._lost is not None:
            return None
        now = self._clock.monotonic()
        pause = RETRY_AFTER
        if self._renew_interval is not None:
            pause = min(pause, self._renew_interval.total_seconds() / 2)
        retry = now + max(MIN_PAUSE, pause)
        if self._deadline is None:
            return retry
        return max(now + MIN_PAUSE, min(retry, self._deadline))

    def _renew_early(self, now: float) -> float | None:
        """How long before it is due (monotonic ``now``) this lock's renewal may
        go out in a batch with others; None: it goes alone (also when its
        locker cannot send writes together: a batch would only put its
        renewals one after another)."""
        if self._renew_interval is None or not self._active or self._lost is not None:
            return None
        if not hasattr(self.locker, "execute_batch"):
            return None
        if self._deadline is not None and self._deadline - now < BATCH_LEAD:
            return None
        return min(EARLY_CAP, self._renew_interval.total_seconds() * EARLY_SHARE)

    def _tick_needs_renewal(self) -> bool | None:
        """Decide a renewal tick: True renew now, False just re-schedule, None stop."""
        if not self._active or self._lost is not None:
            return None
        if self._stop is not None and self._stop.is_set():
            self._event(EventCode.RENEWAL_STOPPED, "stop signal set")
            return None
        if self._deadline is not None and self._clock.monotonic() >= self._deadline:
            self._declare_lost(
                LockLost(
                    f"lock {self.name!r}: lease ran out before a renewal succeeded", lock=self.name
                )
            )
            return None
        return self._renew_interval is not None or self._claim_by is not None

    def _cancel_renewal(self) -> None:
        """Remove this lock from its renewer; shells override."""

    def _renewal_ended(self, why: str) -> None:
        """The renewer can no longer renew this lock: a held lock is lost."""
        if self._active and self._lost is None:
            self._declare_lost(
                LockLost(f"lock {self.name!r}: renewal stopped: {why}", lock=self.name)
            )

    def _lost_hook(self) -> None:
        """Called once when the lock is declared lost; shells may override."""

    def _declare_lost(self, error: LockLost) -> None:
        if self._lost is not None:
            return
        self._lost = error
        self._cancel_renewal()
        self._event(EventCode.LOST, str(error), error)
        if (obs := _observe.of(self.locker)) is not None:
            obs.lost(self, _observe.cause_of(error), error)
        self._lost_hook()
        for callback in list(self._on_lost):
            try:
                callback(error)
            except Exception as exc:
                self._event(EventCode.DEBUG, f"on_lost callback failed: {exc!r}", exc)

    def _begin_release(self) -> int | None:
        if not self._active:
            raise LockNotHeld(f"lock {self.name!r} is not held", lock=self.name)
        self._cancel_renewal()
        if self._renew_interval is not None:
            self._event(EventCode.RENEWAL_STOPPED, "released")
        return self._token

    def _released(self, done: Released) -> None:
        """Finish a release; raise :class:`LockLost` if the lock had been lost."""
        was_held = self._deadline is None or self._clock.monotonic() < self._deadline
        self._record, self._record_at = done.record, self._clock.monotonic()
        if done.lost_reason is not None and self._lost is None:
            self._declare_lost(LockLost(f"lock {self.name!r}: {done.lost_reason}", lock=self.name))
        lost = self._lost
        self._event(
            EventCode.RELEASE_OK, "released" if lost is None else f"released after loss: {lost}"
        )
        if lost is not None:
            raise lost
        if not was_held:
            error = LockLost(
                f"lock {self.name!r}: lease had run out before release", lock=self.name
            )
            if (obs := _observe.of(self.locker)) is not None:
                obs.lost(self, _observe.EXPIRED, error)
            raise error
        if (obs := _observe.of(self.locker)) is not None:
            obs.released(self)
