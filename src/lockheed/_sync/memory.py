"""An in-process locker with the ConfigMap locker's semantics, for tests.

State is kept encoded, exactly as the ConfigMap locker stores it, with a
version counter that increases on every write (like etcd's revision), so the
same core decisions, fencing tokens and conflict handling apply. Its clock is
this process's (injectable), observed without error. It is shared between
threads of one process only; it never stands in for a claim about Kubernetes.
Use it to test code that takes a lock without running a cluster.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._clock import ServerClock
from .._codec import validate_object_name, validate_prefix
from .._core import CONFLICT, UNCHANGED, Create, Effect, Read, Replace, Watch
from .._state import Record, StateFormatError, decode_state, encode_state

__all__ = ["MemoryLocker"]


class _Stored:
    __slots__ = ("data", "meta", "version")

    def __init__(self, version: int, data: str | None, meta: dict[str, str]):
        self.version, self.data, self.meta = version, data, meta


class MemoryLocker:
    """Locks kept in this process's memory.

    ``wall`` is the clock the store judges time by (seconds since the epoch);
    pass a shifted one to simulate a server whose clock differs from yours.
    """

    kind = "Memory"

    def __init__(
        self,
        *,
        prefix: str = "lockheed",
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.prefix = validate_prefix(prefix)
        self._wall = wall
        self.clock = ServerClock(monotonic=monotonic, wall=wall)
        self._objects: dict[str, _Stored] = {}
        self._changed = threading.Condition()
        self._versions = itertools.count(1)
        self.requests: dict[str, int] = {"get": 0, "create": 0, "update": 0, "watch": 0, "list": 0}
        self._listeners: set[Callable[[], None]] = set()

    def __repr__(self) -> str:
        return f"MemoryLocker(prefix={self.prefix!r}, locks={len(self._objects)})"

    def close(self) -> None:
        pass

    def __enter__(self) -> MemoryLocker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (from the writing thread) after every change."""
        with self._changed:
            self._listeners.add(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        with self._changed:
            self._listeners.discard(listener)

    def _notify(self) -> None:
        self._changed.notify_all()
        for listener in list(self._listeners):
            listener()

    def version_of(self, name: str) -> str | None:
        stored = self._objects.get(self.object_name(name))
        return None if stored is None else str(stored.version)

    def object_name(self, name: str) -> str:
        return validate_object_name(self.prefix, name)

    def _observe(self) -> None:
        now = self.clock.monotonic()
        self.clock.observe(self._wall(), now, now, resolution=0.0)

    def _record(self, name: str, stored: _Stored) -> Record:
        try:
            state, error = decode_state(stored.data), None
        except StateFormatError as exc:
            state, error = None, str(exc)
        return Record(name, str(stored.version), state, dict(stored.meta), error)

    # -- test helpers

    def put_raw(self, name: str, data: str | None, meta: Mapping[str, str] | None = None) -> None:
        """Store an arbitrary document (for example a malformed one) under ``name``."""
        with self._changed:
            self._objects[self.object_name(name)] = _Stored(
                next(self._versions), data, dict(meta or {})
            )
            self._notify()

    def raw(self, name: str) -> tuple[str | None, dict[str, str]] | None:
        stored = self._objects.get(self.object_name(name))
        return None if stored is None else (stored.data, dict(stored.meta))

    def delete(self, name: str) -> None:
        with self._changed:
            self._objects.pop(self.object_name(name), None)
            self._notify()

    # -- I/O

    def execute(self, effect: Effect) -> Any:
        self._observe()
        key = self.object_name(effect.name)
        if isinstance(effect, Watch):
            return self._watch(key, effect)
        with self._changed:
            stored = self._objects.get(key)
            if isinstance(effect, Read):
                self.requests["get"] += 1
                return None if stored is None else self._record(effect.name, stored)
            if isinstance(effect, Create):
                self.requests["create"] += 1
                if stored is not None:
                    return CONFLICT
                meta = {k: v for k, v in effect.meta.items() if v is not None}
                stored = _Stored(next(self._versions), encode_state(effect.state), meta)
            elif isinstance(effect, Replace):
                self.requests["update"] += 1
                if stored is None:
                    return None
                if str(stored.version) != effect.version:
                    return CONFLICT
                meta = dict(stored.meta)
                for k, v in effect.meta.items():
                    if v is None:
                        meta.pop(k, None)
                    else:
                        meta[k] = v
                stored = _Stored(next(self._versions), encode_state(effect.state), meta)
            else:
                raise TypeError(f"unknown effect {effect!r}")
            self._objects[key] = stored
            self._notify()
            return self._record(effect.name, stored)

    def _watch(self, key: str, effect: Watch) -> Any:
        if not effect.open:
            return UNCHANGED  # no watch is kept open here
        self.requests["watch"] += 1
        with self._changed:
            while True:
                stored = self._objects.get(key)
                current = None if stored is None else str(stored.version)
                if current != effect.version:
                    return None if stored is None else self._record(effect.name, stored)
                remaining = None
                if effect.until is not None:
                    remaining = effect.until - self.clock.monotonic()
                    if remaining <= 0:
                        return UNCHANGED
                self._changed.wait(
                    None if remaining is None else min(remaining, threading.TIMEOUT_MAX)
                )

    def list_records(self) -> list[Record]:
        self.requests["list"] += 1
        self._observe()
        head = f"{self.prefix}-" if self.prefix else ""
        with self._changed:
            items = sorted(self._objects.items())
        return [self._record(key[len(head) :], stored) for key, stored in items]
