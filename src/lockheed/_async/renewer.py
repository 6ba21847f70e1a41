"""One renewal task per event loop, for every lock held on that loop.

Locks register a due time; the task sleeps until the earliest (or until a
registration wakes it) and awaits the lock's ``_tick``, which returns the next
due time. A tick that raises is logged and does not stop the task. The task is
created on first use; when its loop closes, it ends with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
import weakref
from typing import Any

__all__ = ["renewer"]

logger = logging.getLogger("lockheed")


class _LoopRenewer:
    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Any]] = []
        self.due: dict[int, float] = {}
        self.seq = itertools.count()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def push(self, lock: Any, due: float) -> None:
        self.due[id(lock)] = due
        heapq.heappush(self.heap, (due, next(self.seq), lock))
        self.wake.set()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="lockheed-renewer")

    async def _next(self) -> Any:
        while True:
            while self.heap and self.due.get(id(self.heap[0][2])) != self.heap[0][0]:
                heapq.heappop(self.heap)
            self.wake.clear()
            if self.heap:
                due, _, lock = self.heap[0]
                wait = due - time.monotonic()
                if wait <= 0:
                    heapq.heappop(self.heap)
                    del self.due[id(lock)]
                    return lock
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait)
            else:
                await self.wake.wait()

    async def _run(self) -> None:
        while True:
            lock = await self._next()
            try:
                due = await lock._tick()
            except Exception:
                logger.exception("lockheed renewal of %r failed unexpectedly", lock)
                continue
            if due is not None and id(lock) not in self.due:
                self.due[id(lock)] = due
                heapq.heappush(self.heap, (due, next(self.seq), lock))


class _Renewers:
    """Routes each lock to the renewer of the loop it was scheduled on."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopRenewer] = (
            weakref.WeakKeyDictionary()
        )
        self._of_lock: weakref.WeakKeyDictionary[Any, _LoopRenewer] = weakref.WeakKeyDictionary()

    def schedule(self, lock: Any, due: float) -> None:
        loop = asyncio.get_running_loop()
        r = self._by_loop.get(loop)
        if r is None:
            r = self._by_loop[loop] = _LoopRenewer()
        self._of_lock[lock] = r
        r.push(lock, due)

    def cancel(self, lock: Any) -> None:
        r = self._of_lock.pop(lock, None)
        if r is not None:
            r.due.pop(id(lock), None)


renewer = _Renewers()
