"""The synchronous lock.

A :class:`Lock` runs the core's flows (:mod:`lockheed._core`) against its
locker, and keeps the last object it read or wrote, so a renewal is one
conditional write when nobody else wrote in between.

Failure semantics:

* ``acquire`` waits on a watch of the lock's one object and on the holder's
  expiry; it raises :class:`LockTimeout` (naming the holder and its expiry)
  when the timeout passes, :class:`LockStateError` for a malformed object.
* While held with a duration, the lock has a loss deadline on this host's
  monotonic clock: the send time of the last successful write plus the
  duration, minus a safety margin. ``held`` turns False at that deadline even
  if no renewal could be made; a renewal that finds another holder, our lease
  gone, or the object deleted declares the loss at once. A loss fires the
  ``on_lost`` callbacks (from the renewal thread) and a 516 event; it is never
  silent.
* ``release`` removes only our own lease. After a loss it still cleans up
  what is ours, leaves any new holder untouched, and raises :class:`LockLost`
  so the loss surfaces (also at the end of a ``with`` block).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from ._conditions import Condition
from ._core import Acquired, Intent, Released, Watch, acquire_flow, release_flow, renew_flow
from ._errors import LockError, LockLost, LockNotHeld, LockTimeout
from ._events import Event, EventCode, EventHandler, emit
from ._locker import Locker
from ._renewer import renewer
from ._state import Record

__all__ = ["Lock", "loss_margin", "to_timedelta"]

# While a stop signal is given, watches are cut into pieces this long so the
# signal is noticed.
_STOP_CHECK = 1.0


def to_timedelta(value: float | timedelta | None, what: str) -> timedelta | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, timedelta)):
        raise TypeError(f"{what} must be seconds or a timedelta, not {type(value).__name__}")
    td = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if td < timedelta(0):
        raise ValueError(f"{what} must not be negative")
    return None if td == timedelta(0) else td


def loss_margin(duration: timedelta) -> float:
    """How long before the lease's end a holder stops believing it holds the lock."""
    return min(2.0, duration.total_seconds() / 10)


class Lock:
    """A mutex named ``name`` kept by ``locker``.

    Configure with the chainable ``with_*`` directives (as in Go lockheed), then
    ``acquire``/``release`` or use ``with lock:``. One Lock object is one
    instance ID; acquiring it again while held refreshes the lease (as Go does).
    """

    def __init__(self, name: str, locker: Locker, *, instance_id: str | None = None):
        locker.object_name(name)  # validate before any request
        self.name = name
        self.locker = locker
        self.instance_id = instance_id or str(uuid.uuid4())
        self._duration: timedelta | None = None
        self._renew_interval: timedelta | None = None
        self._tags: tuple[str, ...] = ()
        self._reset_tags = False
        self._force: Condition | None = None
        self._stop: threading.Event | None = None
        self._on_event: EventHandler | None = None
        self._on_lost: list[Callable[[LockLost], Any]] = []
        self._mutex = threading.RLock()
        self._record: Record | None = None
        self._token: int | None = None
        self._expires: datetime | None = None
        self._deadline: float | None = None  # monotonic loss deadline; None = never
        self._active = False  # acquired and not released
        self._lost: LockLost | None = None

    def __repr__(self) -> str:
        state = "held" if self.held else "lost" if self._lost else "free"
        return f"Lock({self.name!r}, {self.locker!r}, {state}, instance_id={self.instance_id!r})"

    # ------------------------------------------------------------ directives

    def with_duration(self, duration: float | timedelta | None) -> Lock:
        """Lease length for each acquire and renewal; 0 or None: never expires."""
        self._duration = to_timedelta(duration, "duration")
        return self

    def with_renew_interval(self, interval: float | timedelta | None) -> Lock:
        """Renew in the background this often while held; None: never."""
        self._renew_interval = to_timedelta(interval, "renew interval")
        return self

    def with_tags(self, tags: Iterable[str]) -> Lock:
        tags = (tags,) if isinstance(tags, str) else tuple(tags)
        if not all(isinstance(t, str) and t for t in tags):
            raise ValueError("tags must be non-empty strings")
        self._tags = tuple(dict.fromkeys(tags))
        return self

    def with_reset_tags(self, reset: bool = True) -> Lock:
        """Make the lock's tags exactly ``with_tags``' on acquire and release."""
        self._reset_tags = reset
        return self

    def with_force(self, condition: Condition | None) -> Lock:
        """Take the lock over, even from a live holder, when ``condition`` matches."""
        if condition is not None and not isinstance(condition, Condition):
            raise TypeError("with_force takes a Condition")
        self._force = condition
        return self

    def with_stop(self, stop: threading.Event | None) -> Lock:
        """A signal (Go's context) that aborts a waiting acquire and stops renewal."""
        self._stop = stop
        return self

    def with_event_handler(self, handler: EventHandler | None) -> Lock:
        self._on_event = handler
        return self

    def on_lost(self, callback: Callable[[LockLost], Any]) -> Lock:
        """Call ``callback(error)`` when the lock is lost while held."""
        self._on_lost.append(callback)
        return self

    # ------------------------------------------------------------ properties

    @property
    def held(self) -> bool:
        if not self._active or self._lost is not None:
            return False
        return self._deadline is None or self.locker.clock.monotonic() < self._deadline

    @property
    def fencing_token(self) -> int | None:
        """Strictly increases each time the lock changes hands; None when never held."""
        return self._token

    @property
    def expires_at(self) -> datetime | None:
        """Our lease's expiry as written (server time), while held."""
        return self._expires if self._active else None

    @property
    def lost(self) -> LockLost | None:
        return self._lost

    def _intent(self) -> Intent:
        return Intent(
            self.name, self.instance_id, self._duration, self._tags, self._reset_tags, self._force
        )

    # ------------------------------------------------------------ running flows

    def _run(self, flow: Any) -> Any:
        locker, stop = self.locker, self._stop
        result: Any = None
        try:
            while True:
                effect = flow.send(result)
                if stop is not None:
                    if stop.is_set():
                        flow.close()
                        raise LockError(f"lock {self.name!r}: stopped", lock=self.name)
                    if isinstance(effect, Watch):
                        cap = locker.clock.monotonic() + _STOP_CHECK
                        if effect.until is None or effect.until > cap:
                            effect = Watch(effect.name, effect.version, cap)
                result = locker.execute(effect)
        except StopIteration as done:
            return done.value

    def _event(self, code: EventCode, message: str, error: BaseException | None = None) -> None:
        emit(self._on_event, Event(code, self.name, self.instance_id, message, error))

    def _hold(self, record: Record, expires: datetime | None, sent: float) -> None:
        self._record = record
        self._expires = expires
        if self._duration is None:
            self._deadline = None
        else:
            self._deadline = sent + self._duration.total_seconds() - loss_margin(self._duration)

    # ------------------------------------------------------------ operations

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> int:
        """Take the lock; return the fencing token.

        ``blocking=False`` tries once; ``timeout`` (seconds) bounds the wait.
        Raises :class:`LockTimeout` naming the holder when it cannot be had.
        """
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must not be negative")
        clock = self.locker.clock
        deadline = None
        if not blocking:
            deadline = clock.monotonic()
        elif timeout is not None:
            deadline = clock.monotonic() + timeout
        with self._mutex:
            try:
                got: Acquired = self._run(acquire_flow(self._intent(), clock, deadline))
            except LockError as exc:
                self._event(EventCode.ACQUIRE_FAILED, str(exc), exc)
                raise
            keep = self._active and self._lost is None and self._token is not None
            self._token = self._token if keep else got.token
            self._active, self._lost = True, None
            self._hold(got.record, got.expires, got.sent)
            self._event(EventCode.ACQUIRE_OK, f"acquired, fencing token {self._token}")
            self._schedule(first=True)
            assert self._token is not None
            return self._token

    def _schedule(self, first: bool = False) -> None:
        due = self._next_due()
        if due is None:
            return
        if first and self._renew_interval is not None:
            self._event(EventCode.RENEWAL_STARTED, f"renewing every {self._renew_interval}")
        renewer.schedule(self, due)

    def _next_due(self) -> float | None:
        now = self.locker.clock.monotonic()
        if self._renew_interval is not None:
            due = now + self._renew_interval.total_seconds()
            return due if self._deadline is None else min(due, self._deadline)
        return self._deadline

    def renew(self) -> None:
        """Extend our lease now; raises :class:`LockLost` if it is no longer ours."""
        with self._mutex:
            if not self._active:
                raise LockNotHeld(f"lock {self.name!r} is not held", lock=self.name)
            if self._lost is not None:
                raise self._lost
            deadline = self._deadline
            assert self._token is not None
            try:
                record, expires, sent = self._run(
                    renew_flow(
                        self._intent(), self.locker.clock, self._record, self._token, deadline
                    )
                )
            except LockLost as exc:
                self._declare_lost(exc)
                raise
            except LockTimeout as exc:
                lost = LockLost(
                    f"lock {self.name!r}: could not renew in time: {exc}", lock=self.name
                )
                self._declare_lost(lost)
                raise lost from exc
            except LockError as exc:
                self._event(EventCode.RENEW_FAILED, str(exc), exc)
                raise
            self._hold(record, expires, sent)
            self._event(EventCode.RENEW_OK, f"renewed until {expires}")

    def _tick(self) -> float | None:
        """Called by the renewal thread when due."""
        with self._mutex:
            if not self._active or self._lost is not None:
                return None
            now = self.locker.clock.monotonic()
            if self._stop is not None and self._stop.is_set():
                self._event(EventCode.RENEWAL_STOPPED, "stop signal set")
                return None
            if self._deadline is not None and now >= self._deadline:
                self._declare_lost(
                    LockLost(
                        f"lock {self.name!r}: lease ran out before a renewal succeeded",
                        lock=self.name,
                    )
                )
                return None
            if self._renew_interval is None:
                return self._deadline
            try:
                self.renew()
            except LockLost:
                return None
            except LockError:
                retry = now + min(1.0, self._renew_interval.total_seconds())
                return retry if self._deadline is None else min(retry, self._deadline)
            return self._next_due()

    def _declare_lost(self, error: LockLost) -> None:
        if self._lost is not None:
            return
        self._lost = error
        renewer.cancel(self)
        self._event(EventCode.LOST, str(error), error)
        for callback in list(self._on_lost):
            try:
                callback(error)
            except Exception as exc:
                self._event(EventCode.DEBUG, f"on_lost callback failed: {exc!r}", exc)

    def release(self) -> None:
        """Remove our lease. Raises :class:`LockLost` if the lock had been lost
        (after removing whatever is still ours), :class:`LockNotHeld` if never held."""
        with self._mutex:
            if not self._active:
                raise LockNotHeld(f"lock {self.name!r} is not held", lock=self.name)
            renewer.cancel(self)
            if self._renew_interval is not None:
                self._event(EventCode.RENEWAL_STOPPED, "released")
            try:
                done: Released = self._run(
                    release_flow(self._intent(), self.locker.clock, self._record, self._token)
                )
            except LockError as exc:
                self._event(EventCode.RELEASE_FAILED, str(exc), exc)
                raise
            finally:
                self._active = False
                self._expires = None
            self._record = done.record
            if done.lost_reason is not None and self._lost is None:
                self._declare_lost(
                    LockLost(f"lock {self.name!r}: {done.lost_reason}", lock=self.name)
                )
            lost, was_held = (
                self._lost,
                self._deadline is None or self.locker.clock.monotonic() < self._deadline,
            )
            self._event(
                EventCode.RELEASE_OK, "released" if lost is None else f"released after loss: {lost}"
            )
            if lost is not None:
                raise lost
            if not was_held:
                raise LockLost(
                    f"lock {self.name!r}: lease had run out before release", lock=self.name
                )

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
