"""Background renewal: one thread per process for every held sync lock."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from lockheed import Event, EventCode, Lock, MemoryLocker


def test_one_renewal_thread_for_many_locks() -> None:
    store = MemoryLocker()
    renewed: set[str] = set()
    all_renewed = threading.Event()
    locks = [Lock(f"many-{i}", store).with_duration(5).with_renew_interval(0.05) for i in range(20)]

    def on_event(event: Event) -> None:
        if event.code == EventCode.RENEW_OK:
            renewed.add(event.lock)
            if len(renewed) == len(locks):
                all_renewed.set()

    for lock in locks:
        lock.with_event_handler(on_event).acquire()
    assert all_renewed.wait(10), f"renewed only {sorted(renewed)}"
    names = [t.name for t in threading.enumerate()]
    assert names.count("lockheed-renewer") == 1
    for lock in locks:
        lock.release()
    assert all(not lock.held for lock in locks)


def test_a_failing_callback_does_not_stop_renewal() -> None:
    store = MemoryLocker()
    count = 0
    twice = threading.Event()

    def explode(event: Event) -> None:
        nonlocal count
        if event.code == EventCode.RENEW_OK:
            count += 1
            if count >= 2:
                twice.set()
            raise RuntimeError("a broken handler")

    lock = Lock("sturdy", store).with_duration(5).with_renew_interval(0.05)
    lock.with_event_handler(explode).acquire()
    assert twice.wait(10)
    assert lock.held
    lock.release()


class _SendsTogether(MemoryLocker):
    """A locker that says it can send several writes at once."""

    def execute_batch(self, effects: list[Any]) -> list[Any]:
        return [self.execute(effect) for effect in effects]


def test_which_renewals_may_go_out_early_in_a_batch() -> None:
    alone = Lock("alone", MemoryLocker()).with_duration(30).with_renew_interval(10)
    batched = Lock("batched", _SendsTogether()).with_duration(30).with_renew_interval(10)
    short = Lock("short", _SendsTogether()).with_duration(4).with_renew_interval(1)
    for lock in (alone, batched, short):
        lock.acquire()
    now = time.monotonic()
    # a locker that sends one write at a time gains nothing from a batch
    assert alone._renew_early(now) is None
    assert batched._renew_early(now) == pytest.approx(0.5)  # 5% of its interval
    # a loss deadline under 5 s away: renewed alone, never held up by a batch
    assert short._renew_early(now) is None
    for lock in (alone, batched, short):
        lock.release()
    assert batched._renew_early(now) is None  # not held: nothing to renew
