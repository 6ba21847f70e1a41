"""Background renewal: one thread per process for every held sync lock."""

from __future__ import annotations

import threading

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
