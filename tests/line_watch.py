"""Following a lock object version by version, to see its line of waiters change."""

from __future__ import annotations

from collections.abc import Callable

from lockheed import ConfigMapLocker
from lockheed._core import UNCHANGED, Read, Watch
from lockheed._queue import read_queue
from lockheed._state import Record

WAIT = 60.0


def line_of(record: Record | None) -> list[str]:
    """The instance IDs in line, in order."""
    return [] if record is None else [w.instance_id for w in read_queue(record.meta)]


def holders_of(record: Record | None) -> list[str]:
    """The instance IDs with a lease in the object (expired or not)."""
    if record is None or record.state is None:
        return []
    return sorted(record.state.leases)


class LineWatch:
    """Follows one lock object version by version through one watch stream."""

    def __init__(self, locker: ConfigMapLocker, name: str):
        self.locker, self.name = locker, name
        self.session = object()
        self.record: Record | None = locker.execute(Read(name))
        self.history: list[Record | None] = [self.record]

    def next(self, timeout: float) -> Record | None:
        """The next version of the object (None if it was deleted)."""
        clock = self.locker.clock
        deadline = clock.monotonic() + timeout
        while True:
            if clock.monotonic() >= deadline:
                raise AssertionError(
                    f"no change of lock {self.name!r} within {timeout} s; "
                    f"holders {holders_of(self.record)}, line {line_of(self.record)}"
                )
            version = self.record.version if self.record is not None else None
            found = self.locker.execute(Watch(self.name, version, deadline, self.session))
            if found is not UNCHANGED:
                self.record = found
                self.history.append(found)
                return self.record

    def until(self, predicate: Callable[[Record | None], bool], timeout: float = WAIT) -> Record:
        """Follow the versions until one satisfies ``predicate``."""
        while not predicate(self.record):
            self.next(timeout)
        assert self.record is not None
        return self.record

    def close(self) -> None:
        self.locker.end_watch(self.session)
