"""Which changes wake a waiter in line (``Watch.unless``), driven
through the core's flows on the Memory locker with a fake clock (no I/O, no
real time). Many waiters on one lock must not all wake on every hand-off among
those ahead of them; but a change that could make one's wait end sooner (a
dead waiter's short claim replacing a longer lease) must wake it, or a line
behind dead waiters would stall for a whole lease."""

from __future__ import annotations

from datetime import timedelta

from line_world import NAME, World
from lockheed._core import (
    Acquired,
    Intent,
    acquire_flow,
    release_flow,
    renew_flow,
)


def test_a_waiter_far_back_sleeps_through_hand_offs_between_live_waiters() -> None:
    world = World()
    clock = world.store.clock
    world.finish(acquire_flow(world.intent("holder"), clock, None))  # a 60 s lease
    ahead = {who: acquire_flow(world.intent(who), clock, None) for who in ("a", "b", "c")}
    for flow in ahead.values():
        world.until_wait(flow)
    mine = acquire_flow(Intent(NAME, "me", timedelta(seconds=30)), clock, None)
    watch = world.until_wait(mine)
    assert world.line() == ["a", "b", "c", "me"]
    assert watch.unless is not None  # behind others while the lock is held

    read = world.read
    # The holder hands the lock to "a": a 5 s claim where a 60 s lease was. My
    # wait was timed by the lease; the claim ends sooner, so this wakes me.
    world.advance(1.0)
    world.finish(release_flow(world.intent("holder"), clock, None, None))
    handed = read()
    assert not watch.unless(handed)
    watch = world.until_wait(mine, handed)
    assert watch.unless is not None

    # "a" takes it (no write), renews (a full lease), and hands it to "b": each is
    # nothing to me (still behind, and no lease ends before the claim I wait on).
    got_a = world.finish(ahead["a"], handed)
    assert isinstance(got_a, Acquired) and got_a.handed
    world.advance(1.0)
    world.finish(renew_flow(world.intent("a"), clock, got_a.record, got_a.token))
    assert watch.unless(read())
    world.advance(1.0)
    world.finish(release_flow(world.intent("a"), clock, read(), got_a.token))
    to_b = read()
    assert world.line() == ["c", "me"]
    assert watch.unless(to_b)

    # "b" hands it to "c": I am first in line now, which wakes me.
    got_b = world.finish(ahead["b"], to_b)
    assert isinstance(got_b, Acquired) and got_b.handed
    world.advance(0.5)
    world.finish(release_flow(world.intent("b"), clock, read(), got_b.token))
    assert world.line() == ["me"]
    assert not watch.unless(read())


def test_a_claim_that_ends_sooner_than_the_wait_wakes_the_waiter() -> None:
    """Two waiters ahead of me die in line. The hand-off to the first gives it a
    5 s claim, which must wake me: sleeping on to the released holder's old
    expiry would cost the line a whole lease."""
    world = World()
    clock = world.store.clock
    world.finish(acquire_flow(world.intent("holder"), clock, None))
    for dead in ("dead-1", "dead-2"):
        world.until_wait(acquire_flow(world.intent(dead), clock, None))  # never runs again
    mine = acquire_flow(world.intent("me"), clock, None)
    watch = world.until_wait(mine)
    assert watch.unless is not None
    world.finish(release_flow(world.intent("holder"), clock, None, None))
    assert not watch.unless(world.read())


def test_a_version_judged_again_later_is_judged_on_the_time_then() -> None:
    """The filters of many waiters in one process share the judgment of a
    version made a moment before (the first lease end it shows); the same
    version judged once time has moved on is judged anew: a lease that ran out
    meanwhile leaves the lock free, which wakes the waiter."""
    world = World()
    clock = world.store.clock
    world.finish(acquire_flow(world.intent("holder"), clock, None))  # a 60 s lease
    world.until_wait(acquire_flow(world.intent("a"), clock, None))
    mine = acquire_flow(world.intent("me"), clock, None)
    watch = world.until_wait(mine)
    assert watch.unless is not None
    other = world.until_wait(acquire_flow(world.intent("other"), clock, None))
    assert other.unless is not None
    version = world.read()
    assert watch.unless(version) and other.unless(version)  # nothing new for either
    world.advance(61.0)  # the holder's lease has run out
    assert not watch.unless(version)
    assert not other.unless(version)


def test_the_first_in_line_sleeps_through_joins_and_renewals_but_not_its_turn() -> None:
    """The first waiter's wait is timed by the holder's lease: a join behind it
    or a renewal changes nothing for it (with many waiters, each acquisition
    brings the previous holder's join), while the hand-off to it, or the lock
    coming free, wakes it."""
    world = World()
    clock = world.store.clock
    got = world.finish(acquire_flow(world.intent("holder"), clock, None))  # a 60 s lease
    assert isinstance(got, Acquired)
    mine = acquire_flow(world.intent("me"), clock, None)
    watch = world.until_wait(mine)
    assert world.line() == ["me"]
    assert watch.unless is not None  # first in line while the lock is held
    world.until_wait(acquire_flow(world.intent("later"), clock, None))
    assert world.line() == ["me", "later"]
    assert watch.unless(world.read())  # a join behind me
    world.advance(1.0)
    world.finish(renew_flow(world.intent("holder"), clock, got.record, got.token))
    assert watch.unless(world.read())  # a renewal: the lease ends later
    world.advance(1.0)
    world.finish(release_flow(world.intent("holder"), clock, world.read(), got.token))
    assert world.line() == ["later"]
    assert not watch.unless(world.read())  # handed to me


def test_the_first_in_line_wakes_when_the_holder_s_lease_runs_out() -> None:
    world = World()
    clock = world.store.clock
    world.finish(acquire_flow(world.intent("holder"), clock, None))  # a 60 s lease, then gone
    watch = world.until_wait(acquire_flow(world.intent("me"), clock, None))
    assert watch.unless is not None
    version = world.read()
    assert watch.unless(version)
    world.advance(61.0)
    assert not watch.unless(version)  # free now: mine to take
