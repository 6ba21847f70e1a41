"""Helpers whose sync twins (``lockheed._sync.compat``) are trivial."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

sleep = asyncio.sleep


async def try_acquire(mutex: asyncio.Lock) -> bool:
    """Take ``mutex`` if it is free, without waiting (nothing can take it between
    the check and the acquire: no other task runs in between)."""
    if mutex.locked():
        return False
    await mutex.acquire()
    return True


async def shield(aw: Awaitable[T]) -> T:
    """Run ``aw`` to completion even if the caller is cancelled meanwhile; the
    caller's cancellation is re-raised once it is done."""
    task = asyncio.ensure_future(aw)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result
