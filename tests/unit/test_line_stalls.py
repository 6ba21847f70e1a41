"""Two ways the line of waiters once misbehaved, driven through the core's flows
on the Memory locker with a fake clock (no I/O, no real time): a waiter behind
dead ones stalled by newcomers joining behind it, and a non-blocking try that
joined the line only to leave it."""

from __future__ import annotations

import pytest

from line_world import NAME, World
from lockheed import Lock, LockTimeout, MemoryLocker
from lockheed._core import (
    CLAIM_WINDOW,
    Acquired,
    Read,
    Sleep,
    Watch,
    acquire_flow,
    release_flow,
)


def test_newcomers_joining_behind_do_not_stall_a_waiter_behind_dead_ones() -> None:
    """Line [dead-1, dead-2, me] behind a holder; the holder releases (handing
    the lock to dead-1). A newcomer joins behind every 2 s. The lock should be
    mine within about 2 x CLAIM_WINDOW: dead-1's handed lease runs out, then
    I wait one CLAIM_WINDOW for dead-2. Instead every join changes the
    object's version, which restarts my CLAIM_WINDOW, and I time out."""
    world = World()
    clock = world.store.clock
    world.finish(acquire_flow(world.intent("holder"), clock, None))
    for dead in ("dead-1", "dead-2"):
        world.until_wait(acquire_flow(world.intent(dead), clock, None))  # then never runs again
    started = world.mono
    mine = acquire_flow(world.intent("me"), clock, world.mono + 60)
    watch = world.until_wait(mine)
    assert world.line() == ["dead-1", "dead-2", "me"]
    world.finish(release_flow(world.intent("holder"), clock, None, None))

    newcomers = 0
    got: Acquired | None = None
    while True:
        current = world.store.execute(Read(NAME))
        if current.version == watch.version:  # nothing new: time passes, someone joins
            step = 2.0 if watch.until is None else min(2.0, watch.until - world.mono)
            world.advance(max(step, 0.0))
            if world.mono >= started + 60:
                break
            newcomers += 1
            world.until_wait(acquire_flow(world.intent(f"new-{newcomers}"), clock, None))
            current = world.store.execute(Read(NAME))
        try:
            effect = mine.send(current)
            while not isinstance(effect, Watch):
                answer = None if isinstance(effect, Sleep) else world.store.execute(effect)
                effect = mine.send(answer)
            watch = effect
        except StopIteration as done:
            got = done.value
            break
        except LockTimeout:
            break
    waited = world.mono - started
    assert isinstance(got, Acquired), f"timed out behind {newcomers} newcomers"
    assert waited <= 2 * CLAIM_WINDOW + 3, f"waited {waited:.0f} s behind {newcomers} newcomers"


def test_a_non_blocking_try_on_a_held_lock_writes_nothing() -> None:
    store = MemoryLocker()
    holder = Lock(NAME, store).with_duration(30)
    holder.acquire()
    before = dict(store.requests)
    with pytest.raises(LockTimeout):
        Lock(NAME, store).with_duration(30).acquire(blocking=False)
    writes = sum(store.requests[v] - before.get(v, 0) for v in ("update", "create"))
    assert writes == 0, dict(store.requests)
