"""One background renewer per process for every held sync lock.

Locks register a due time. A scheduler thread sleeps until the earliest one
(or until a registration wakes it) and hands the lock to a worker thread,
which ticks it (:func:`~lockheed._sync.lock.tick_all`) and re-schedules it
at the time that returns. Locks of the same locker due within a short while
of it (:func:`~lockheed._base.due_renewals`) go with it, up to
:data:`~lockheed._base.MAX_BATCH`: their renewals are written in one
pipelined exchange, and, renewed together, they stay due together. Workers are started as needed (up
to :data:`MAX_WORKERS`), so a renewal stuck on a slow request never delays
the renewal of a lock of another locker, nor of a lock whose loss deadline
is near (such a lock is ticked alone); a lock is never ticked twice at once.
Threads start on first use (and again if one ever died) and are daemons, so
they never keep a process alive.

Failure semantics: a tick that raises (it should not: the lock turns its own
errors into a retry) is logged and the lock is looked at again shortly, so its
loss is still declared at its deadline; one lock's trouble never stops
another's renewal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from .._base import due_renewals
from .._schedule import DueQueue

__all__ = ["renewer"]

logger = logging.getLogger("lockheed")

# Ticks running at once; beyond this, due locks wait for a free worker.
MAX_WORKERS = 16


class Renewer:
    def __init__(self) -> None:
        self._queue: DueQueue[Any] = DueQueue()
        # One lock, two conditions: the scheduler waits on one, idle workers on
        # the other, so each change wakes only the one thread that must act (a
        # wake-up of every thread per renewal cost more CPU than the renewal).
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)  # the scheduler's
        self._work = threading.Condition(self._mutex)  # idle workers'
        self._wake_at: float | None = None  # when the scheduler wakes by itself (None: never)
        self._thread: threading.Thread | None = None
        self._ready: deque[list[Any]] = deque()  # due batches waiting for a worker
        self._workers = 0
        self._idle = 0

    def schedule(self, lock: Any, due: float) -> None:
        with self._cond:
            self._queue.push(lock, due)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="lockheed-renewer", daemon=True
                )
                self._thread.start()
            self._wake_for(due)

    def _wake_for(self, due: float) -> None:
        """Wake the scheduler if ``due`` comes before it would wake by itself."""
        if self._wake_at is None or due < self._wake_at:
            self._wake_at = due
            self._cond.notify()

    def cancel(self, lock: Any) -> None:
        with self._cond:
            self._queue.cancel(lock)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                batch, wait = due_renewals(self._queue, now)
                if not batch:
                    self._wake_at = None if wait is None else now + wait
                    self._cond.wait(wait)
                    self._wake_at = None
                    continue
                self._ready.append(batch)
                if self._idle == 0 and self._workers < MAX_WORKERS:
                    self._workers += 1
                    threading.Thread(
                        target=self._serve, name="lockheed-renewal", daemon=True
                    ).start()
                else:
                    self._work.notify()

    def _serve(self) -> None:
        while True:
            with self._cond:
                self._idle += 1
                while not self._ready:
                    self._work.wait()
                self._idle -= 1
                batch = self._ready.popleft()
            from .lock import tick_all  # here: the lock module imports this one

            try:
                dues = tick_all(batch)
            except Exception:
                logger.exception("lockheed renewal of %r failed unexpectedly", batch)
                dues = [lock._retry_due() for lock in batch]
            with self._cond:
                for lock, due in zip(batch, dues, strict=True):
                    if due is not None:
                        self._queue.push_if_absent(lock, due)
                        self._wake_for(due)


renewer = Renewer()
