"""Leader election on a :class:`~lockheed.Lock`, with threads.

The elector campaigns by acquiring its lock (waiting on a watch of the lock's
one object, so a released leadership is taken at once), leads while it holds
the lock (renewed every retry period by the process's renewal thread) and
resigns by releasing it. Decisions (timing, when to report what) are in
:mod:`lockheed._election`.

Threads: :meth:`LeaderElector.run` campaigns and calls every callback in the
thread that called it; the leader's work runs in a thread of its own
(``lockheed-leader``) and is passed a :class:`threading.Event` that is set the
moment its term ends. The two meet through one queue, so :meth:`stop` only
puts a message on it and sets a flag: it is safe in a signal handler.

Failure semantics:

* Leadership is lost when the lock is: taken over (a forced acquire), its
  object deleted, or no renewal succeeded for the renew deadline. At that
  moment the work's event is set and ``on_stopped_leading`` is called; once
  the work has returned, what is left of the lease is released and the
  elector campaigns again (``once=True``: ``run`` raises the
  :class:`~lockheed.LockLost`). A new term never starts while the previous
  term's work still runs.
* Leadership is released when the work returns (``run`` returns its result),
  raises (``run`` re-raises it), after :meth:`stop` (the work's event is set;
  the release waits for the work to return, so two leaders' work never
  overlaps), and on KeyboardInterrupt in ``run``. A release that fails is
  reported as an event and the lease runs out by itself; work that returned
  after the lock was lost without the elector noticing first makes ``run``
  raise :class:`~lockheed.LockLost`.
* A campaign retries errors from an unreachable API server (and endless write
  conflicts) after the retry period; other errors (permissions, a malformed
  lock object) end it and propagate. A campaign notices :meth:`stop` within
  about a second (the lock's stop signal; its one watch stays open meanwhile).
* A callback that raises is reported as an event of the lock and does not
  stop the election.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Generic, TypeVar

from .._election import Callbacks, Election, Notice, Timing, configure, retryable
from .._errors import LockError, LockLost
from .._events import EventCode
from .lock import Lock

__all__ = ["LeaderElector"]

T = TypeVar("T")

_STOP, _LOST, _DONE = "stop", "lost", "done"


class _Flag:
    """The lock's stop signal during a campaign: the elector's stop flag."""

    def __init__(self, elector: LeaderElector):
        self._elector = elector

    def is_set(self) -> bool:
        return self._elector._stopping


class _Outcome(Generic[T]):
    """How the work of one term ended."""

    def __init__(self, value: T | None = None, error: BaseException | None = None):
        self.value = value
        self.error = error


class LeaderElector:
    """Elects one leader among the holders of ``lock``'s identity (its instance ID).

    ``lease_duration``, ``renew_deadline`` and ``retry_period`` (seconds or
    timedeltas) are client-go's, with client-go's rules; they set the lock's
    duration, renew interval and loss deadline (see :mod:`lockheed._election`).
    ``on_new_leader(identity)`` is called whenever another leader is seen
    (while campaigning, from the acquire's watch; no extra request) and when
    this elector starts leading.
    """

    def __init__(
        self,
        lock: Lock,
        *,
        lease_duration: float | timedelta = 15.0,
        renew_deadline: float | timedelta = 10.0,
        retry_period: float | timedelta = 2.0,
        on_started_leading: Callable[[], Any] | None = None,
        on_stopped_leading: Callable[[], Any] | None = None,
        on_new_leader: Callable[[str], Any] | None = None,
    ):
        if not isinstance(lock, Lock):
            raise TypeError(
                f"LeaderElector takes a Lock, not {type(lock).__name__} "
                "(AsyncLeaderElector takes an AsyncLock)"
            )
        self.timing = Timing.of(lease_duration, renew_deadline, retry_period)
        configure(lock, self.timing)
        self.lock = lock
        self._callbacks = Callbacks(on_started_leading, on_stopped_leading, on_new_leader)
        self._election = Election(lock.instance_id)
        self._stopping = False
        self._inbox: queue.SimpleQueue[tuple[str, int, Any]] = queue.SimpleQueue()
        self._term = 0
        self._running = threading.Lock()
        lock.on_lost(self._lost)
        lock._on_wait = self._observed

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.lock!r}, leader={self.leader!r})"

    @property
    def identity(self) -> str:
        return self.lock.instance_id

    @property
    def leader(self) -> str | None:
        """The leader's identity as last observed; None when none is known."""
        return self._election.leader

    @property
    def is_leader(self) -> bool:
        """True while this elector leads (and its lock is held)."""
        return self._election.leading and self.lock.held

    def stop(self) -> None:
        """Make :meth:`run` end its term (the work's event is set), release
        leadership once the work returned, and return. Safe in a signal handler
        and from any thread. A stopped elector stays stopped."""
        self._stopping = True
        self._inbox.put((_STOP, 0, None))

    # ------------------------------------------------------------ bookkeeping

    def _notify(self, notices: list[Notice]) -> None:
        self._callbacks.deliver(notices, self._report)

    def _report(self, what: str, error: Exception) -> None:
        self.lock._event(EventCode.DEBUG, f"{what} callback failed: {error!r}", error)

    def _observed(self, holder: str | None) -> None:
        self._notify(self._election.observed(holder))

    def _lost(self, error: LockLost) -> None:
        # The renewal thread (or a release) declares the loss; the run thread reports it.
        self._inbox.put((_LOST, self._term, error))

    def _campaign(self) -> bool:
        """Acquire the lock; False if stopped first."""
        lock = self.lock
        while not self._stopping:
            lock.with_stop(_Flag(self))
            try:
                lock.acquire()
            except LockError as exc:
                if self._stopping:
                    return False
                if not retryable(exc):
                    raise
                if self._stopped_within(self.timing.retry_period):
                    return False
                continue
            finally:
                lock.with_stop(None)
            self._term += 1
            self._notify(self._election.won())
            return True
        return False

    def _stopped_within(self, seconds: float) -> bool:
        try:
            while True:
                kind, _, _ = self._inbox.get(timeout=seconds)
                if kind == _STOP:
                    return True
        except queue.Empty:
            return False

    def _resign(self) -> LockLost | None:
        """Release; return the :class:`LockLost` it raised. Other failures are reported
        as events by ``release()``, and the lease runs out by itself."""
        try:
            self.lock.release()
        except LockLost as exc:
            return exc
        except LockError:
            pass
        finally:
            self._notify(self._election.ended())
        return None

    def _work(
        self, work: Callable[[threading.Event], T], ended: threading.Event, term: int
    ) -> None:
        try:
            outcome: _Outcome[T] = _Outcome(work(ended))
        except BaseException as exc:
            outcome = _Outcome(error=exc)
        self._inbox.put((_DONE, term, outcome))

    # ------------------------------------------------------------ leading

    def run(
        self, work: Callable[[threading.Event], T] | None = None, *, once: bool = False
    ) -> T | None:
        """Lead and run ``work(ended)``; return its result once it is done as leader.

        ``ended`` is a :class:`threading.Event` set the moment the term ends
        (leadership lost, or :meth:`stop`); the work should then return soon.
        After a loss the elector campaigns again to run the work anew
        (``once=True``: raise the :class:`~lockheed.LockLost` instead). Without
        ``work``, lead until :meth:`stop`. After :meth:`stop`, returns the
        work's result if it was running, else None.
        """
        if not self._running.acquire(blocking=False):
            raise RuntimeError("this elector is already running")
        try:
            while self._campaign():
                lost, late, outcome = self._lead(work)
                error = None if outcome is None else outcome.error
                if error is not None and (lost is None or not isinstance(error, LockLost)):
                    raise error
                if lost is None and outcome is not None:  # the work is done
                    if late is not None:
                        raise late  # but the lock was lost before it was released
                    return outcome.value
                lost = lost or late
                if lost is None:
                    return None  # stopped, with no work
                if once:
                    raise lost
            return None
        finally:
            self._running.release()

    def _lead(
        self, work: Callable[[threading.Event], T] | None
    ) -> tuple[LockLost | None, LockLost | None, _Outcome[T] | None]:
        """One term: wait for its end, then resign. Returns the loss that ended it
        (None: it ended by stop or by the work's return), the loss the release
        found, and how the work ended."""
        term = self._term
        ended = threading.Event()
        worker: threading.Thread | None = None
        if work is not None:
            worker = threading.Thread(
                target=self._work, args=(work, ended, term), name="lockheed-leader", daemon=True
            )
            worker.start()
        lost: LockLost | None = None
        outcome: _Outcome[T] | None = None
        try:
            while outcome is None and not (worker is None and ended.is_set()):
                kind, of, payload = self._inbox.get()
                if kind == _STOP:
                    ended.set()
                elif of != term:
                    continue  # left over from an earlier term
                elif kind == _LOST and lost is None:
                    lost = payload
                    ended.set()
                    self._notify(self._election.ended(payload.holder))
                elif kind == _DONE:
                    outcome = payload
        except BaseException:  # KeyboardInterrupt: end the term, then let it propagate
            ended.set()
            if worker is not None:
                worker.join()
            self._resign()
            raise
        ended.set()
        return lost, self._resign(), outcome
