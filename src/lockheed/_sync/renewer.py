"""One background thread per process that renews every held sync lock.

Locks register a due time; the thread sleeps until the earliest one (or until
a registration wakes it), calls the lock's ``_tick`` and re-schedules it at the
time that returns. It starts on first use (and again if it ever died) and is a
daemon, so it never keeps a process alive. A tick that raises is logged and
does not stop the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .._schedule import DueQueue

__all__ = ["renewer"]

logger = logging.getLogger("lockheed")


class Renewer:
    def __init__(self) -> None:
        self._queue: DueQueue[Any] = DueQueue()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def schedule(self, lock: Any, due: float) -> None:
        with self._cond:
            self._queue.push(lock, due)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="lockheed-renewer", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def cancel(self, lock: Any) -> None:
        with self._cond:
            self._queue.cancel(lock)

    def _next(self) -> Any:
        with self._cond:
            while True:
                lock, wait = self._queue.pop_due(time.monotonic())
                if lock is not None:
                    return lock
                self._cond.wait(wait)

    def _run(self) -> None:
        while True:
            lock = self._next()
            try:
                due = lock._tick()
            except Exception:
                logger.exception("lockheed renewal of %r failed unexpectedly", lock)
                continue
            if due is not None:
                with self._cond:
                    self._queue.push_if_absent(lock, due)


renewer = Renewer()
