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
    CONFLICT,
    Acquired,
    Intent,
    Read,
    Replace,
    Sleep,
    Watch,
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


def test_a_join_that_meets_a_crowd_looks_on_a_watch_of_every_change() -> None:
    """No write labels a contender before its join lands, so a watch by its view
    would show it nothing: after a crowd's pause it looks on a watch of every
    change (the shell opens one, then answers later looks from it), not by its
    view, which the shell could only answer with a read at every look."""
    world = World()
    clock = world.store.clock
    world.finish(acquire_flow(world.intent("holder"), clock, None))
    mine = acquire_flow(world.intent("me"), clock, None, rng=lambda: 1.0)
    join = mine.send(None)
    assert isinstance(join, Read)
    join = mine.send(world.store.execute(join))
    assert isinstance(join, Replace)  # the join, from the copy without me
    for who in ("a", "b"):  # two others join first: a crowd
        world.until_wait(acquire_flow(world.intent(who), clock, None))
    conflict = world.store.execute(join)
    assert conflict is CONFLICT
    looks: list[Watch] = []
    effect = mine.send(conflict)
    while not (isinstance(effect, Watch) and not effect.quick):
        answer: object = None
        if isinstance(effect, Watch):  # the open watch has the current version
            looks.append(effect)
            answer = world.read()
        elif isinstance(effect, Sleep):
            world.advance(effect.until - world.mono)
        else:
            answer = world.store.execute(effect)
        effect = mine.send(answer)
    # The look after the conflict (by its view: a single conflict costs one
    # request either way, a read), then the one after the crowd's pause, on
    # a watch of every change: it opens one, and later looks cost nothing.
    assert [look.view for look in looks] == ["me", None]
    # In line now (ahead of "b", which began to ask after it did), its wait
    # watches by its view.
    assert world.line() == ["a", "me", "b"]
    assert effect.view == "me"
