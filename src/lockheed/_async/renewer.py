"""One renewer per event loop, for every lock held on that loop.

Locks register a due time; a scheduler task sleeps until the earliest (or
until a registration wakes it) and starts its tick
(:func:`~lockheed._async.lock.tick_all`) as a task of its own, which returns
the next due time. Locks of the same locker due within a short while of it
(:func:`~lockheed._base.due_renewals`) go with it, up to
:data:`~lockheed._base.MAX_BATCH`: their renewals are written in one
pipelined exchange, and, renewed together, they stay due together. Ticks run concurrently, so a
renewal stuck on a slow request never delays the renewal of a lock of
another locker, nor of a lock whose loss deadline is near (such a lock is
ticked alone). The scheduler is created on first use.

Failure semantics: a tick that raises (it should not: the lock turns its own
errors into a retry) is logged and the lock is looked at again shortly. When
the loop shuts down or closes while locks are still held, renewal ends with
it, and every such lock is declared lost at once (``on_lost``, event 516)
rather than silently running out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any

from .._base import due_renewals
from .._schedule import DueQueue

__all__ = ["renewer"]

logger = logging.getLogger("lockheed")


class _LoopRenewer:
    def __init__(self) -> None:
        self.queue: DueQueue[Any] = DueQueue()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.ticking: dict[Any, asyncio.Task[None]] = {}

    def push(self, lock: Any, due: float) -> None:
        self.queue.push(lock, due)
        self.wake.set()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="lockheed-renewer")

    async def _next(self) -> list[Any]:
        while True:
            self.wake.clear()
            now = time.monotonic()
            batch, wait = due_renewals(self.queue, now)
            if batch:
                return batch
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), wait)

    async def _run(self) -> None:
        try:
            while True:
                batch = await self._next()
                task = asyncio.get_running_loop().create_task(self._tick(batch))
                for lock in batch:
                    self.ticking[lock] = task
        finally:
            self._orphan()

    async def _tick(self, batch: list[Any]) -> None:
        from .lock import tick_all  # here: the lock module imports this one

        try:
            dues = await tick_all(batch)
        except Exception:
            logger.exception("lockheed renewal of %r failed unexpectedly", batch)
            dues = [lock._retry_due() for lock in batch]
        finally:
            for lock in batch:
                self.ticking.pop(lock, None)
        for lock, due in zip(batch, dues, strict=True):
            if due is not None:
                self.queue.push_if_absent(lock, due)
                self.wake.set()

    def _orphan(self) -> None:
        """The loop is going away: no lock scheduled here will be renewed again."""
        locks = {*self.queue.pending(), *self.ticking}
        for task in list(self.ticking.values()):
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                task.cancel()
        for lock in locks:
            self.queue.cancel(lock)
            try:
                lock._renewal_ended("its event loop stopped")
            except Exception:
                logger.exception("lockheed: declaring %r lost failed", lock)


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
