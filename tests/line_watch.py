"""Following a lock object version by version, to see its line of waiters change."""

from __future__ import annotations

from collections.abc import Callable

from lockheed import ConfigMapLocker
from lockheed._codec import decode_configmap
from lockheed._core import Read
from lockheed._queue import read_queue
from lockheed._state import Record
from lockheed._sync.watcher import WatchStream

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
    """Follows one lock object version by version through one watch stream of its
    own (a lock's waits skip to the newest version; this sees every one)."""

    def __init__(self, locker: ConfigMapLocker, name: str):
        self.locker, self.name = locker, name
        self.record: Record | None = locker.execute(Read(name))
        self.history: list[Record | None] = [self.record]
        self.stream: WatchStream | None = None

    def _open(self) -> WatchStream:
        version = self.record.version if self.record is not None else None
        events = self.locker.api.watch(self.locker.object_name(self.name), version, WAIT)
        self.stream = WatchStream()
        return self.stream.start(events)

    def next(self, timeout: float) -> Record | None:
        """The next version of the object (None if it was deleted)."""
        clock = self.locker.clock
        deadline = clock.monotonic() + timeout
        while True:
            left = deadline - clock.monotonic()
            item = None if left <= 0 else (self.stream or self._open()).next(left)
            if item is None:
                raise AssertionError(
                    f"no change of lock {self.name!r} within {timeout} s; "
                    f"holders {holders_of(self.record)}, line {line_of(self.record)}"
                )
            kind, obj = item
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                found = None if kind == "DELETED" else decode_configmap(self.name, obj)
                seen = self.record
                if (
                    found is not None
                    and seen is not None
                    and int(found.version) <= int(seen.version)
                ):
                    continue  # a version seen already
                self.record = found
                self.history.append(found)
                return self.record
            assert self.stream is not None
            self.stream.close()  # ended (or broken): watch again from the last version
            self.stream = None

    def until(self, predicate: Callable[[Record | None], bool], timeout: float = WAIT) -> Record:
        """Follow the versions until one satisfies ``predicate``."""
        while not predicate(self.record):
            self.next(timeout)
        assert self.record is not None
        return self.record

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
