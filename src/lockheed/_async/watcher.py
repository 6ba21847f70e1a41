"""A watch stream read in the background, so a waiter can wait for change after
change of one object on a single request.

The stream's events are queued as they arrive; :meth:`WatchStream.next` waits
for the next one with a timeout of the caller's choosing. The stream ends
with an ``END`` item when the server closes it, or a ``BROKEN`` item (with
the error) when it fails: the connection broke, or the server refused it;
:meth:`close` stops it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

__all__ = ["WatchStream"]


class WatchStream:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._held: tuple[str, Any] | None = None  # an event handed back (unget)

    def start(self, events: AsyncGenerator[tuple[str, Any], None]) -> WatchStream:
        self._task = asyncio.get_running_loop().create_task(
            self._pump(events), name="lockheed-watch"
        )
        return self

    def opened(self, response: Any) -> None:
        """The streaming response is open (nothing to keep: a task is cancelled)."""

    async def _pump(self, events: AsyncGenerator[tuple[str, Any], None]) -> None:
        try:
            async with aclosing(events):
                async for item in events:
                    self._queue.put_nowait(item)
        except Exception as exc:  # broken, refused (403), or a bad answer
            self._queue.put_nowait(("BROKEN", exc))
            return
        self._queue.put_nowait(("END", None))

    def unget(self, item: tuple[str, Any]) -> None:
        """Hand back the event just taken: the next ``poll`` or ``next`` returns it."""
        self._held = item

    def poll(self) -> tuple[str, Any] | None:
        """The next event if one has arrived, else None (never waits)."""
        if self._held is not None:
            item, self._held = self._held, None
            return item
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def next(self, timeout: float | None) -> tuple[str, Any] | None:
        """The next event, or None when ``timeout`` seconds pass first."""
        if self._held is not None:
            return self.poll()
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def close(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
