"""Helpers for the lock tests: request counting."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx2 as httpx

from lockheed import ConfigMapLocker, MemoryLocker


class Requests:
    """Counts API requests by verb (get, create, update, watch, list)."""

    def __init__(self, locker: Any):
        self.locker = locker
        self.counts: Counter[str] = Counter()
        if isinstance(locker, ConfigMapLocker):
            locker.api.client.event_hooks = {"request": [self._hook], "response": []}

    def _hook(self, request: httpx.Request) -> None:
        params = request.url.params
        verb = {"POST": "create", "PUT": "update", "DELETE": "delete"}.get(request.method)
        if verb is None:
            if "watch" in params:
                verb = "watch"
            elif request.url.path.endswith("/configmaps"):
                verb = "list"
            else:
                verb = "get"
        self.counts[verb] += 1

    def snapshot(self) -> Counter[str]:
        if isinstance(self.locker, MemoryLocker):
            return Counter({k: v for k, v in self.locker.requests.items() if v})
        return Counter(self.counts)

    def since(self, before: Counter[str]) -> Counter[str]:
        now = self.snapshot()
        now.subtract(before)
        return +now

    def total_since(self, before: Counter[str]) -> int:
        return sum(self.since(before).values())


MakeLocker = Callable[..., Any]


ConfigMapLockers = Callable[..., ConfigMapLocker]
