"""The Locker protocol: what a backend provides to :class:`lockheed.Lock`.

A locker stores lock objects and performs the core's effects on them
(:mod:`lockheed._core`): read, create, replace at a version (a stale version
must return ``CONFLICT``, never overwrite), and watch one object for a change.
It encodes and decodes its object; it decides nothing. Versions must be
integers that increase with every write, because fencing tokens are built on
them. :class:`ConfigMapLocker` and :class:`MemoryLocker` implement it; a third
party can too, and then every lock feature works on its backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from ._clock import ServerClock
from ._core import Effect
from ._state import Record

__all__ = ["Locker"]


@runtime_checkable
class Locker(Protocol):
    prefix: str
    clock: ServerClock

    def object_name(self, name: str) -> str:
        """The stored object's name for lock ``name``; raise ValueError if invalid."""

    def execute(self, effect: Effect) -> Any:
        """Perform one effect and return its result, as documented on the effect."""

    def list_records(self) -> Iterator[Record]:
        """Every lock object this locker holds."""

    def close(self) -> None:
        """Release connections."""
