"""The Locker protocols: what a backend provides to a lock.

A locker stores lock objects and performs the core's effects on them
(:mod:`lockheed._core`): read, create, replace at a version (a stale version
must return ``CONFLICT``, never overwrite), and watch one object for a change.
It encodes and decodes its object; it decides nothing. Versions must be
integers that increase with every write, because fencing tokens are built on
them. ConfigMap, Lease and Memory lockers implement both protocols; a third party can
too, and then every lock feature works on its backend.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ._clock import ServerClock
from ._core import Effect
from ._state import Record

__all__ = ["AsyncLocker", "Locker"]


@runtime_checkable
class Locker(Protocol):
    prefix: str
    clock: ServerClock

    def object_name(self, name: str) -> str:
        """The stored object's name for lock ``name``; raise ValueError if invalid."""

    def execute(self, effect: Effect) -> Any:
        """Perform one effect and return its result, as documented on the effect."""

    def list_records(self) -> list[Record]:
        """Every lock object this locker holds."""

    def close(self) -> None:
        """Release connections."""


@runtime_checkable
class AsyncLocker(Protocol):
    prefix: str
    clock: ServerClock

    def object_name(self, name: str) -> str:
        """The stored object's name for lock ``name``; raise ValueError if invalid."""

    async def execute(self, effect: Effect) -> Any:
        """Perform one effect and return its result, as documented on the effect."""

    async def list_records(self) -> list[Record]:
        """Every lock object this locker holds."""

    async def aclose(self) -> None:
        """Release connections."""
