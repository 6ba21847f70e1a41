"""One background thread per process that renews every held lock.

Locks register a due time; the thread sleeps until the earliest one (or until
a registration wakes it), calls the lock's ``_tick`` and re-schedules it at the
time that returns. It starts on first use and is a daemon, so it never keeps a
process alive. A tick that raises is logged and does not stop the thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Protocol

__all__ = ["Renewer", "renewer"]

logger = logging.getLogger("lockheed")


class Tickable(Protocol):
    def _tick(self) -> float | None:
        """Do what is due; return the monotonic time of the next tick, or None to stop."""


class Renewer:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Tickable]] = []
        self._due: dict[int, float] = {}  # id(lock) -> its current due time
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def schedule(self, lock: Tickable, due: float) -> None:
        with self._cond:
            self._due[id(lock)] = due
            heapq.heappush(self._heap, (due, next(self._seq), lock))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="lockheed-renewer", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def cancel(self, lock: Tickable) -> None:
        with self._cond:
            self._due.pop(id(lock), None)

    def _next(self) -> Tickable:
        with self._cond:
            while True:
                while self._heap and self._due.get(id(self._heap[0][2])) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # cancelled or re-scheduled
                if self._heap:
                    due, _, lock = self._heap[0]
                    wait = due - time.monotonic()
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        del self._due[id(lock)]
                        return lock
                    self._cond.wait(wait)
                else:
                    self._cond.wait()

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
                    if id(lock) not in self._due:
                        self._due[id(lock)] = due
                        heapq.heappush(self._heap, (due, next(self._seq), lock))


renewer = Renewer()
