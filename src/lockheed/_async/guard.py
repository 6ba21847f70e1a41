"""``async with lock.guard():``: a block that is cancelled when its lock is lost.

A holder that keeps working after losing its lock is the most common failure
of lock libraries. The guard registers the task running the block; when the
lock is declared lost, that task is cancelled, and the cancellation leaves
the block as :class:`~lockheed.LockLost`. A cancellation from elsewhere is
left alone.
"""

from __future__ import annotations

import asyncio
import sys
from types import TracebackType
from typing import TYPE_CHECKING

from .._errors import LockLost, LockNotHeld

if TYPE_CHECKING:
    from .lock import AsyncLock

__all__ = ["Guard"]


class Guard:
    def __init__(self, lock: AsyncLock):
        self._lock = lock
        self._task: asyncio.Task[object] | None = None
        self._fired = False

    def _on_lost(self, _error: LockLost) -> None:
        task = self._task
        if task is not None and not task.done() and not self._fired:
            self._fired = True
            task.get_loop().call_soon_threadsafe(task.cancel)

    async def __aenter__(self) -> AsyncLock:
        lock = self._lock
        if lock.lost is not None:
            raise lock.lost
        if not lock.held:
            raise LockNotHeld(f"lock {lock.name!r} is not held", lock=lock.name)
        self._task = asyncio.current_task()
        lock._on_lost.append(self._on_lost)
        return lock

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lock = self._lock
        if self._on_lost in lock._on_lost:
            lock._on_lost.remove(self._on_lost)
        if self._fired and isinstance(exc, asyncio.CancelledError):
            if sys.version_info >= (3, 11) and self._task is not None:
                self._task.uncancel()
            assert lock.lost is not None
            raise lock.lost from exc
