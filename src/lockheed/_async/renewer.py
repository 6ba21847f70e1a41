"""One renewal task per event loop, for every lock held on that loop.

Locks register a due time; the task sleeps until the earliest (or until a
registration wakes it) and awaits the lock's ``_tick``, which returns the next
due time. A tick that raises is logged and does not stop the task. The task is
created on first use; when its loop closes, it ends with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any

from .._schedule import DueQueue

__all__ = ["renewer"]

logger = logging.getLogger("lockheed")


class _LoopRenewer:
    def __init__(self) -> None:
        self.queue: DueQueue[Any] = DueQueue()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def push(self, lock: Any, due: float) -> None:
        self.queue.push(lock, due)
        self.wake.set()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="lockheed-renewer")

    async def _next(self) -> Any:
        while True:
            self.wake.clear()
            lock, wait = self.queue.pop_due(time.monotonic())
            if lock is not None:
                return lock
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), wait)

    async def _run(self) -> None:
        while True:
            lock = await self._next()
            try:
                due = await lock._tick()
            except Exception:
                logger.exception("lockheed renewal of %r failed unexpectedly", lock)
                continue
            if due is not None:
                self.queue.push_if_absent(lock, due)


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
            r.queue.cancel(lock)


renewer = _Renewers()
