"""The due-time queue behind both renewers (a thread, or a task per loop).

Items are kept in a heap by due time; scheduling an item again or cancelling
it makes its older entries stale, and stale entries are dropped when they
reach the top. No I/O, no locking: the renewers guard it themselves.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["DueQueue"]

T = TypeVar("T")

# The longest a renewer sleeps at once, whatever is due (a timeout too large
# for the platform's wait would kill the renewer).
MAX_WAIT = 3600.0


class DueQueue(Generic[T]):
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._due: dict[int, float] = {}  # id(item) -> its current due time
        self._seq = itertools.count()

    def push(self, item: T, due: float) -> None:
        self._due[id(item)] = due
        heapq.heappush(self._heap, (due, next(self._seq), item))

    def push_if_absent(self, item: T, due: float) -> None:
        """Re-schedule after a tick, unless the item was scheduled anew meanwhile."""
        if id(item) not in self._due:
            self.push(item, due)

    def cancel(self, item: T) -> None:
        self._due.pop(id(item), None)

    def pending(self) -> list[T]:
        """The items scheduled now (each once)."""
        live = {id(item): item for due, _, item in self._heap if self._due.get(id(item)) == due}
        return list(live.values())

    def pop_batch(
        self,
        now: float,
        early: Callable[[T], float | None],
        key: Callable[[T], object],
        limit: int,
        horizon: float,
    ) -> tuple[list[T], float | None]:
        """The next item due by ``now``, with the items of the same ``key`` that
        may go with it (at most ``limit`` in all); else ``[]`` and how long until
        one is due (None: none).

        ``early(item)`` says how long before its due time an item may go with
        others (at most ``horizon``), or None for an item that goes alone (and
        takes none with it). Companions are taken in due order; an item passed
        over (of another key, or one that goes alone) stays scheduled as it
        was."""
        first, wait = self.pop_due(now)
        if first is None:
            return [], wait
        batch = [first]
        if early(first) is None:
            return batch, None
        group = key(first)
        heap = self._heap
        passed: list[tuple[float, int, T]] = []
        while len(batch) < limit:
            self._drop_stale()
            if not heap:
                break
            due, _, item = heap[0]
            ahead = early(item)
            if ahead is not None and due <= now + ahead and key(item) == group:
                heapq.heappop(heap)
                del self._due[id(item)]
                batch.append(item)
            elif due <= now + horizon:
                passed.append(heapq.heappop(heap))  # not with this batch
            else:
                break
        for entry in passed:
            heapq.heappush(heap, entry)
        return batch, None

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and self._due.get(id(heap[0][2])) != heap[0][0]:
            heapq.heappop(heap)  # cancelled or re-scheduled

    def pop_due(self, now: float) -> tuple[T | None, float | None]:
        """The next item due by ``now``; else None and how long until one is (None: none)."""
        heap = self._heap
        self._drop_stale()
        if not heap:
            return None, None
        due, _, item = heap[0]
        if due > now:
            return None, min(MAX_WAIT, due - now)
        heapq.heappop(heap)
        del self._due[id(item)]
        return item, None
