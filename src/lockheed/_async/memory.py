"""The Memory locker for asyncio code: the same store, waits that never block the loop.

An :class:`AsyncMemoryLocker` wraps a :class:`~lockheed.MemoryLocker` store (a
new one by default, or one shared with sync code), so sync and async locks in
one process contend on the same locks. Reads and writes are immediate; a watch
waits on an ``asyncio.Event`` that the store's writers set.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .._core import UNCHANGED, Effect, Read, Watch
from .._state import Record
from .._sync.memory import MemoryLocker

__all__ = ["AsyncMemoryLocker"]


class AsyncMemoryLocker:
    kind = "Memory"

    def __init__(self, store: MemoryLocker | None = None):
        self.store = store or MemoryLocker()
        self.prefix = self.store.prefix
        self.clock = self.store.clock

    def __repr__(self) -> str:
        return f"AsyncMemoryLocker({self.store!r})"

    @property
    def requests(self) -> dict[str, int]:
        return self.store.requests

    def object_name(self, name: str) -> str:
        return self.store.object_name(name)

    async def aclose(self) -> None:
        pass

    async def __aenter__(self) -> AsyncMemoryLocker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def execute(self, effect: Effect) -> Any:
        if not isinstance(effect, Watch) or not effect.open:
            return self.store.execute(effect)
        self.store.requests["watch"] += 1
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(changed.set)

        self.store.add_listener(wake)
        try:
            while True:
                changed.clear()
                if self.store.version_of(effect.name) != effect.version:
                    self.store.requests["get"] -= 1  # the read below is part of the watch
                    return self.store.execute(Read(effect.name))
                timeout = None
                if effect.until is not None:
                    timeout = effect.until - self.clock.monotonic()
                    if timeout <= 0:
                        return UNCHANGED
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout)
        finally:
            self.store.remove_listener(wake)

    async def list_records(self) -> list[Record]:
        return self.store.list_records()
