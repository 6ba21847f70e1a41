"""A lock's world for driving the core's flows by hand: the Memory locker on a
fake clock (no I/O, no real time), and the steps the line tests take."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from lockheed import MemoryLocker
from lockheed._core import Flow, Intent, Read, Watch
from lockheed._queue import read_queue
from lockheed._state import Record

NAME = "jobs"


class World:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = datetime(2026, 11, 30, 7, tzinfo=timezone.utc).timestamp()
        self.store = MemoryLocker(wall=lambda: self.wall, monotonic=lambda: self.mono)

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds

    def intent(self, who: str) -> Intent:
        return Intent(NAME, who, timedelta(seconds=60))

    def until_wait(self, flow: Flow, answer: Any = None) -> Watch:
        """Run ``flow`` (sending it ``answer`` first) until it waits; return that wait."""
        while True:
            effect = flow.send(answer)
            if isinstance(effect, Watch):
                return effect
            answer = self.store.execute(effect)

    def finish(self, flow: Flow, answer: Any = None) -> Any:
        """Run ``flow`` (sending it ``answer`` first) to its end; return its result."""
        while True:
            try:
                effect = flow.send(answer)
            except StopIteration as done:
                return done.value
            answer = self.store.execute(effect)

    def read(self) -> Record:
        record = self.store.execute(Read(NAME))
        assert isinstance(record, Record)
        return record

    def line(self) -> list[str]:
        return [w.instance_id for w in read_queue(self.read().meta)]
