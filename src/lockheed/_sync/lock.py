# Generated from lockheed/_async/lock.py by scripts/unasync.py: do not edit.
"""The lock shell: runs the core's flows against a locker, holding a mutex.

Failure semantics (see also :mod:`lockheed._base`):

* ``acquire`` waits on a watch of the lock's one object and on the holder's
  expiry, rides out transient backend failures (the core backs off and reads
  again), and raises :class:`~lockheed.LockTimeout` (naming the holder and its
  expiry) when the timeout passes. If it fails or is interrupted (cancelled,
  or stopped by ``with_stop``) after a write of its own may have reached the
  server, it removes whatever lease of its own it finds, and its place in the
  line, before re-raising, so an abandoned acquire leaves neither behind.
* Renewal runs in the process's renewer (one for all locks); a renewal that
  finds another holder, our lease gone, or the object deleted declares the
  loss at once; failing renewals (including unexpected errors) are retried
  and declare it at the loss deadline. A renewal tick never waits for this
  lock's mutex: while an acquire, renew or release of the lock is under way,
  the tick looks again shortly, so one slow lock never holds up another.
* ``release`` removes only our own lease, runs to completion even when the
  caller is interrupted, and raises :class:`~lockheed.LockLost` after a loss.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

from .. import _observe
from .._base import LockBase
from .._core import (
    SETTLE,
    Acquired,
    Create,
    Released,
    Replace,
    Sleep,
    Watch,
    resumed,
)
from .._errors import LockBackendError, LockError, LockForbidden, LockLost
from .._events import EventCode
from .._kubecfg import request_deadline
from .._state import Record
from .compat import shield, sleep, try_acquire
from .renewer import renewer

__all__ = ["Lock", "tick_all"]


class _Session:
    """One lock object's watch session (the key of its open watch in the locker)."""

    __slots__ = ("__weakref__",)


class _Begun:
    """A renewal tick begun (:meth:`Lock._tick_begin`): its lock, whose
    mutex it holds, its flow, and the flow's first effect, to be performed
    (None: the flow ends as soon as it is resumed)."""

    __slots__ = ("effect", "flow", "lock")

    def __init__(self, lock: Lock, flow: Any, effect: Any):
        self.lock, self.flow, self.effect = lock, flow, effect


def _ended(error: Exception) -> Any:
    """A flow that raises ``error`` as soon as it is resumed."""
    raise error
    yield  # a generator


def tick_all(locks: Sequence[Lock]) -> list[float | None]:
    """Renewal ticks of ``locks`` (those the renewer found due together): each
    tick as :meth:`Lock._tick` does it, but the first writes of the
    renewals of one locker go out together where the locker can send them so
    (``execute_batch``: pipelined on one connection), within the earliest loss
    deadline among them. Returns when to tick each lock again (None: never).
    Every mutex a tick takes is left free when this returns or raises."""
    dues: list[float | None] = [None] * len(locks)
    begun: dict[int, _Begun] = {}  # by the lock's place in ``locks``
    try:
        for i, lock in enumerate(locks):
            started = lock._tick_begin()
            if isinstance(started, _Begun):
                begun[i] = started
            else:
                dues[i] = started
        places = list(begun)
        outcomes = dict(zip(places, _perform_all([begun[i] for i in places]), strict=True))
        # The writes that landed first: a tick that must read again does not hold them up.
        places.sort(key=lambda i: not isinstance(outcomes[i][0], Record))
        for i in places:
            b = begun.pop(i)  # its end frees its mutex, however it ends
            result, error = outcomes[i]
            dues[i] = b.lock._tick_end(b, result, error)
    finally:
        for b in begun.values():  # interrupted (cancelled): end the ticks begun
            b.flow.close()
            b.lock._mutex.release()
    return dues


def _perform_all(begun: list[_Begun]) -> list[tuple[Any, Exception | None]]:
    """The outcome of each tick's first effect: the writes to one locker that
    can take them together in one batch, everything else one by one."""
    outcomes: list[tuple[Any, Exception | None]] = [(None, None)] * len(begun)
    together: dict[int, list[int]] = {}
    alone: list[int] = []
    for i, b in enumerate(begun):
        if b.effect is None:
            continue
        if isinstance(b.effect, Replace) and hasattr(b.lock.locker, "execute_batch"):
            together.setdefault(id(b.lock.locker), []).append(i)
        else:
            alone.append(i)
    for group in together.values():
        if len(group) < 2:
            alone += group
            continue
        locker = begun[group[0]].lock.locker
        deadlines = [d for d in (begun[i].lock._deadline for i in group) if d is not None]
        try:
            with request_deadline(min(deadlines) if deadlines else None):
                results = locker.execute_batch([begun[i].effect for i in group])
        except Exception as exc:  # each tick decides what it means
            results = [exc] * len(group)
        for i, result in zip(group, results, strict=True):
            error = result if isinstance(result, Exception) else None
            outcomes[i] = (None, error) if error is not None else (result, None)
    for i in sorted(alone):
        lock, effect = begun[i].lock, begun[i].effect
        try:
            with request_deadline(lock._deadline):
                outcomes[i] = (lock.locker.execute(effect), None)
        except Exception as exc:  # each tick decides what it means
            outcomes[i] = (None, exc)
    return outcomes


class Lock(LockBase):
    """A mutex named ``name`` kept by ``locker`` (or, with ``with_shared()`` /
    ``with_exclusive()``, one holder of a shared lock; see
    :mod:`lockheed._shared_core`).

    Configure with the chainable ``with_*`` directives (as in Go lockheed), then
    acquire and release it, or use it as a context manager. One lock object is
    one instance ID; acquiring it again while held refreshes the lease, as Go
    lockheed does.
    """

    def __init__(self, name: str, locker: Any, *, instance_id: str | None = None):
        super().__init__(name, locker, instance_id=instance_id)
        self._mutex = threading.RLock()
        self._wrote = False  # this acquire sent a write (it may have landed)
        self._session: object = None  # the watch session kept while held, and after

    def _run(self, flow: Any, guard: bool = True, session: object = None) -> Any:
        """Perform a flow's effects; backend errors go back into the flow to decide.
        ``guard=False``: the stop signal does not stop it (cleanup after a stop).
        The flow's waits share one watch session (the locker keeps one watch open
        across them); it ends with the flow unless the caller passes ``session``."""
        result: Any = None
        error: LockBackendError | LockForbidden | None = None
        own = session is None
        session = object() if session is None else session
        try:
            while True:
                effect = flow.send(result) if error is None else flow.throw(error)
                effect, error = self._guard_effect(effect) if guard else effect, None
                if isinstance(effect, Watch):
                    effect = dataclasses.replace(effect, session=session)
                elif isinstance(effect, (Create, Replace)):
                    self._wrote = True
                try:
                    if isinstance(effect, Sleep):
                        sleep(max(0.0, effect.until - self._clock.monotonic()))
                        result = None
                    else:
                        result = self.locker.execute(effect)
                except (LockBackendError, LockForbidden) as exc:
                    error = exc  # the flow decides (a refused look after a conflict reads)
        except StopIteration as done:
            return done.value
        finally:
            flow.close()
            if own:
                self._end_watch(session)

    def _end_watch(self, session: object) -> None:
        end_watch = getattr(self.locker, "end_watch", None)
        if end_watch is not None and session is not None:
            end_watch(session)

    def _latest_record(self) -> None:
        """Bring the cached object up to date from the watch kept open since the
        acquire waited (no request): renewal and release then write at the current
        version instead of meeting a conflict after waiters joined the line."""
        latest = getattr(self.locker, "latest", None)
        if latest is not None and self._session is not None:
            record = latest(self._session, self._record)
            if record is not self._record:
                self._record, self._record_at = record, self._clock.monotonic()

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        self._end_watch(session)

    def _park_session(self) -> None:
        """After a release, keep the session's watch open for a while (the locker
        closes it after a few seconds unused), so that acquiring the same lock
        again soon reuses it instead of sending a new watch."""
        park = getattr(self.locker, "park_watch", None)
        if park is None:
            self._drop_session()
        elif self._session is not None:
            park(self._session)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> int:
        """Take the lock; return the fencing token.

        ``blocking=False`` tries once; ``timeout`` (seconds) bounds the wait.
        Raises :class:`~lockheed.LockTimeout` naming the holder when it cannot be had.
        """
        deadline = self._acquire_deadline(blocking, timeout)
        with self._mutex:
            was_active = self._active
            self._wrote = False
            self._latest_record()
            flow = self._acquire_flow(deadline)
            # The lock's watch session: the one kept since it was last held (its
            # watch still open), or a new one.
            session, self._session = self._session or _Session(), None
            try:
                got: Acquired = self._run(flow, session=session)
            except BaseException as exc:
                self._end_watch(session)
                if isinstance(exc, LockError):
                    self._event(EventCode.ACQUIRE_FAILED, str(exc), exc)
                if self._wrote and not was_active:  # leave the line, drop what landed
                    shield(self._abandon())
                raise
            self._session = session  # its watch, if it waited, is kept while held
            token = self._acquired(got)
            self._schedule()
            return token

    def _abandon(self) -> bool:
        """Remove our place in line, and any lease of ours, after a failed acquire."""
        self._wrote = False
        try:
            done: Released = self._run(self._release_flow(None, None), guard=False)
        except Exception as exc:
            self._event(
                EventCode.RELEASE_FAILED, f"cleanup after interrupted acquire: {exc!r}", exc
            )
            return False
        return done.lost_reason is None

    def _schedule(self) -> None:
        due = self._next_due()
        if due is not None:
            renewer.schedule(self, due)

    def _cancel_renewal(self) -> None:
        renewer.cancel(self)

    def renew(self) -> None:
        """Extend our lease now; raises :class:`~lockheed.LockLost` if it is no longer ours."""
        with self._mutex:
            self._renew_locked()

    def _renew_locked(self, flow: Any = None) -> None:
        """Renew now; ``flow``: a renewal a tick began (:meth:`_tick_begin`)."""
        token = self._check_renewable()
        if flow is None:
            self._latest_record()
            flow = self._renew_flow(token)
        try:
            with request_deadline(self._deadline):
                record, expires, sent = self._run(flow)
        except LockLost as exc:
            self._declare_lost(exc)
            raise
        except LockError as exc:
            self._event(EventCode.RENEW_FAILED, str(exc), exc)
            if (obs := _observe.of(self.locker)) is not None:
                obs.renewal_failed(self)
            raise
        self._hold(record, expires, sent)
        self._event(EventCode.RENEW_OK, f"renewed until {expires}")

    def _tick(self) -> float | None:
        """Called by the renewer when due; returns when to call again (None: never)."""
        (due,) = tick_all([self])
        return due

    def _tick_begin(self) -> float | _Begun | None:
        """The first half of a renewal tick: with the mutex taken, the renewal's
        flow and its first effect, not yet performed (:func:`tick_all` sends
        the first writes of many locks together); or, with nothing to send,
        when to tick again (None: never), the mutex left free."""
        if not try_acquire(self._mutex):
            return self._retry_due()  # an acquire, renew or release is under way
        try:
            renew = self._tick_needs_renewal()
            if renew:
                flow = None
                try:
                    self._latest_record()
                    flow = self._renew_flow(self._check_renewable())
                    return _Begun(self, flow, self._guard_effect(flow.send(None)))
                except Exception as exc:  # the renewal failed at once: its end says why
                    if flow is not None:
                        flow.close()
                    return _Begun(self, _ended(exc), None)
            due = None if renew is None else self._next_due()
        except BaseException:
            self._mutex.release()
            raise
        self._mutex.release()
        return due

    def _tick_end(self, begun: _Begun, result: Any, error: Exception | None) -> float | None:
        """The second half of a renewal tick: its flow resumed with the outcome
        of its first effect; returns when to tick again, as :meth:`_tick`."""
        try:
            self._renew_locked(resumed(begun.flow, result, error))
        except LockLost:
            return None
        except LockError:
            return self._retry_due()
        except Exception as exc:  # a bug must not end renewal silently: retry
            self._event(EventCode.RENEW_FAILED, f"unexpected error: {exc!r}", exc)
            if (obs := _observe.of(self.locker)) is not None:
                obs.renewal_failed(self)
            return self._retry_due()
        finally:
            self._mutex.release()
        return self._next_due()

    def release(self) -> None:
        """Remove our lease; runs to completion even if the caller is interrupted.

        Raises :class:`~lockheed.LockLost` if the lock had been lost (after
        removing whatever is still ours), :class:`~lockheed.LockNotHeld` if not held.
        """
        shield(self._release())

    def _release(self) -> Released:
        with self._mutex:
            token = self._begin_release()
            try:
                self._latest_record()
                settle = None if self._handed_at is None else self._handed_at + SETTLE
                done: Released = self._run(
                    self._release_flow(self._record, token, settle_until=settle),
                    session=self._session,
                )
            except LockError as exc:
                self._event(EventCode.RELEASE_FAILED, str(exc), exc)
                self._drop_session()
                raise
            finally:
                self._park_session()
                self._active = False
                self._expires = None
            self._released(done)
            return done

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
