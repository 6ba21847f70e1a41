"""A stateful model of shared locks and semaphores through the pure core.

Hosts take a readers-writer lock (shared and exclusive holders) or a
semaphore (at most ``LIMIT`` holders, one exclusive host among them), line
up (racing each other to join: their places are dated), sleep through
changes the core says are not theirs, are handed the lock, renew, release
(in turn, as the shells do soon after getting it), give up, and die holding
or in line. Each host runs the core's real flows (with
:mod:`lockheed._shared_core`'s decisions) against a Memory store on a shared
fake clock (the harness, shared with the mutex's model, is
``tests/line_model.py``). Checked throughout:

* never more than the limit of hosts that believe they hold the lock (before
  their own loss deadlines) at one true moment, and never an exclusive
  believer together with anyone else;
* fencing tokens: an exclusive holder's token is larger than every earlier
  holder's, and a shared holder's larger than every earlier exclusive one's;
  every holder holds with the token the object stores for it;
* the stored line only ever holds hosts that joined and did not leave;

and at the end, no live waiter starves: with holders releasing and time
passing, every host still waiting gets the lock, past any dead ones.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import settings
from hypothesis.stateful import invariant

from line_model import Host, LineModel, event
from lockheed._core import (
    CONFLICT,
    UNCHANGED,
    Acquired,
    Flow,
    Read,
    Replace,
    Sleep,
    Watch,
    acquire_flow,
    release_flow,
    renew_flow,
)
from lockheed._queue import read_queue
from lockheed._shared_core import (
    SEMAPHORE,
    SHARED,
    TURN_CAP,
    TURN_RECENT,
    SharedIntent,
    decide_shared_acquire,
    decide_shared_release,
    decide_shared_renew,
    read_tokens,
    release_turn,
    shared_still_behind,
)
from lockheed._state import Record

NAME = "shared"
HOSTS = 6
LIMIT = 3
DURATIONS = (10, 30, 3, 60, 8, 20)


def exclusive(host: Host) -> bool:
    intent = host.intent
    assert isinstance(intent, SharedIntent)
    return intent.exclusive


class SharedModel(LineModel):
    name = NAME
    lock_type = SHARED
    limit: int | None = None
    exclusive_hosts: tuple[int, ...] = (0, 1)

    def __init__(self) -> None:
        super().__init__()
        self.hosts = [
            Host(
                SharedIntent(
                    NAME,
                    f"h{i}",
                    timedelta(seconds=DURATIONS[i]),
                    lock_type=self.lock_type,
                    exclusive=i in self.exclusive_hosts,
                    limit=self.limit,
                ),
                self.clock(),
            )
            for i in range(HOSTS)
        ]
        self.tokens: list[tuple[int, bool]] = []  # (token, exclusive) of each new holding

    def turn_now(self, i: int) -> tuple[Record, Callable[[Record], float]]:
        """The current version, and the release order (``release_turn``) of host
        ``i`` as though it had got the lock in that version."""
        host, got = self.hosts[i], self.store.execute(Read(NAME))
        return got, release_turn(host.clock, self.intent(host), (None, got))

    def intent(self, host: Host) -> SharedIntent:
        assert isinstance(host.intent, SharedIntent)
        return host.intent

    def acquire_flow(self, host: Host, deadline: float | None) -> Flow:
        return acquire_flow(
            self.intent(host),
            host.clock,
            deadline,
            rng=lambda: 0.5,
            decide=decide_shared_acquire,
            behind=shared_still_behind,
            watch_only=True,
        )

    def release_flow(self, host: Host, record: Any, token: int | None) -> Flow:
        """As the shell does: a release soon after getting the lock waits for its turn."""
        intent = self.intent(host)
        turn, until = None, None
        if record is not None and self.mono - host.got_at <= TURN_RECENT:
            turn = release_turn(host.clock, intent, (host.before, host.record))
            until = self.mono + TURN_CAP
        return release_flow(
            intent,
            host.clock,
            record,
            token,
            decide=decide_shared_release,
            settle_until=until,
            turn=turn,
            watch_only=True,
        )

    def renew_flow(self, host: Host) -> Flow:
        assert host.token is not None
        return renew_flow(
            self.intent(host), host.clock, host.record, host.token, decide=decide_shared_renew
        )

    def check_acquired(self, host: Host, got: Acquired) -> None:
        # The token it holds with is the one the object stores for it: what a
        # reader of the object (``lockheed list``, a fenced resource) sees.
        stored = read_tokens(got.record.meta).get(host.intent.instance_id)
        assert stored == got.token, (host.intent.instance_id, got.token, stored)
        others = [h for h in self.believers() if h is not host]
        if exclusive(host):
            assert not others, f"{host.intent.instance_id} exclusive beside {others}"
        else:
            assert not any(exclusive(h) for h in others), "shared beside an exclusive holder"
        if self.limit is not None:
            assert len(others) < self.limit, "more holders than the limit"
        earlier = [t for t, ex in self.tokens if ex or exclusive(host)]
        if got.token == host.token and all(t <= got.token for t in earlier):
            # Its own lease, still stored live (held, or given up locally at its
            # loss deadline just before): nobody it must follow came in between.
            event("took its own lease back: the same token")
        else:
            assert all(got.token > t for t in earlier), (exclusive(host), got.token, self.tokens)
            self.tokens.append((got.token, exclusive(host)))
        kind = "exclusive" if exclusive(host) else "shared"
        event(f"{kind}: handed over in line" if got.handed else f"{kind}: took the lock")

    @invariant()
    def holders_within_bounds(self) -> None:
        believers = self.believers()
        if self.limit is not None:
            assert len(believers) <= self.limit, [h.intent.instance_id for h in believers]
        if any(exclusive(h) for h in believers):
            assert len(believers) == 1, [h.intent.instance_id for h in believers]
        if len(believers) > 1:
            event(f"{len(believers)} holders at once")


class SemaphoreModel(SharedModel):
    lock_type = SEMAPHORE
    limit = LIMIT
    exclusive_hosts = (0,)


TestSharedModel = SharedModel.TestCase
TestSharedModel.settings = settings(max_examples=400, stateful_step_count=40, deadline=None)
TestSemaphoreModel = SemaphoreModel.TestCase
TestSemaphoreModel.settings = settings(max_examples=400, stateful_step_count=40, deadline=None)


def test_a_waiting_writer_holds_later_readers_back_and_enters_when_the_readers_leave() -> None:
    m = SharedModel()
    m.acquire(2, None)  # h2, shared, holds
    m.acquire(3, None)  # h3 shares it
    assert m.hosts[2].holding and m.hosts[3].holding
    m.acquire(0, None)  # h0, exclusive: joins the line
    m.acquire(4, None)  # h4, shared, lines up behind the writer
    assert m.hosts[0].flow is not None and m.hosts[4].flow is not None
    m.release(2)
    m.poke(0)
    assert m.hosts[0].flow is not None  # h3 still holds
    m.release(3)  # the last reader hands the lock to the writer, alone
    m.poke(0)
    m.poke(4)
    assert m.hosts[0].holding and m.hosts[4].flow is not None
    m.release(0)  # the writer hands it to the reader
    m.poke(4)
    assert m.hosts[4].holding
    m.teardown()


@pytest.mark.parametrize("ready", [2, 3])
def test_a_release_on_a_full_semaphore_admits_exactly_as_many_as_fit(ready: int) -> None:
    m = SemaphoreModel()
    for i in (1, 2, 3):
        m.acquire(i, None)
    assert all(m.hosts[i].holding for i in (1, 2, 3))
    m.acquire(4, None)
    m.acquire(5, None)
    assert m.hosts[4].flow is not None and m.hosts[5].flow is not None
    m.hosts[1].record = m.store.execute(Read(NAME))  # up to date, as the shell keeps it
    writes = m.store.requests["update"]
    m.release(1)  # one slot: h4 only, in the release's own write
    assert m.store.requests["update"] == writes + 1
    m.poke(4)
    m.poke(5)
    assert m.hosts[4].holding and m.hosts[5].flow is not None
    assert m.store.requests["update"] == writes + 1  # the admitted waiter wrote nothing
    m.release(ready)
    m.poke(5)
    assert m.hosts[5].holding
    m.teardown()


def test_a_reader_that_loses_the_race_to_join_keeps_its_turn_ahead_of_a_later_writer() -> None:
    """h2 (shared) began to ask before h1 (exclusive), but h1's join landed first:
    h2's join meets a conflict, and h2 joins ahead of h1's entry, so the writer's
    release lets h2 in, and h1 after it."""
    m = SharedModel()
    m.acquire(0, None)  # h0, exclusive, holds
    h1, h2 = m.hosts[1], m.hosts[2]
    m.acquire(2, None, slow=True)  # h2 has read; its join is in flight
    assert isinstance(h2.waiting_on, Replace)
    m.renew(0)  # the object moves on before h1 begins to ask
    m.acquire(1, None)  # h1 reads and joins: its write lands first
    assert m.stored_line() == ["h1"]
    for _ in range(50):  # h2's join conflicts; it looks again and joins
        if "h2" in m.stored_line():
            break
        m.poke(2)
    assert m.stored_line() == ["h2", "h1"]
    m.release(0)  # admits h2 only: the writer behind it waits
    m.poke(2)
    m.poke(1)
    assert h2.holding and not h1.holding
    m.release(2)
    m.poke(1)
    assert h1.holding and (h1.token or 0) > (h2.token or 0)
    m.teardown()


def test_a_newcomer_enters_at_once_only_where_its_place_would_let_it_in() -> None:
    """A reader whose dated place is ahead of a waiting writer enters beside the
    reader holding the lock at once, even after losing the race to the writer;
    one that began to ask after the writer joined lines up."""
    m = SharedModel()
    m.acquire(2, None)  # h2 reads
    h3, h4 = m.hosts[3], m.hosts[4]
    m.acquire(3, None, slow=True)  # h3 began to ask; its write is in flight
    m.renew(2)
    m.acquire(0, None)  # h0, exclusive, lines up behind the reader
    assert m.stored_line() == ["h0"]
    m.acquire(4, None)  # h4 began to ask after h0 joined: behind it
    assert m.stored_line() == ["h0", "h4"] and h4.flow is not None
    for _ in range(4):  # two newcomers made h3's write fail: it pauses, then looks again
        if h3.holding:
            break
        m.poke(3)
        m.advance(1)
    assert h3.holding and m.stored_line() == ["h0", "h4"]
    m.teardown()


def test_waiters_behind_a_writer_sleep_through_joins_and_wake_when_they_can_enter() -> None:
    m = SharedModel()
    m.acquire(2, None)  # h2 reads
    m.acquire(0, None)  # h0, exclusive, waits for h2
    m.acquire(3, None)  # h3 lines up behind the writer
    h0, h3 = m.hosts[0], m.hosts[3]
    assert isinstance(h3.waiting_on, Watch) and h3.waiting_on.unless is not None
    assert isinstance(h0.waiting_on, Watch) and h0.waiting_on.unless is not None
    m.acquire(4, None)  # another reader joins behind: nothing for h0 or h3
    assert not m.ready(h0) and not m.ready(h3)
    m.stop_waiting(0, cancel=True)  # the writer leaves the line: h3 can enter now
    assert m.ready(h3)
    m.poke(3)
    assert h3.holding
    m.teardown()


def test_holders_release_in_the_order_they_came_in_each_after_the_last_leavers_join() -> None:
    """``release_turn``: a holder waits while one that came in before it holds,
    then for a leaver to join the line again, for at most TURN_GAP."""
    m = SemaphoreModel()
    for i in (1, 2, 3):
        m.acquire(i, None)
    h1 = m.hosts[1]
    got, waits = m.turn_now(2)
    assert waits(got)  # h1 came in first and holds
    assert not release_turn(h1.clock, m.intent(h1), (None, got))(got)  # h1 goes first
    m.release(1)
    after = m.store.execute(Read(NAME))
    assert waits(after)  # h1 left and is not back in line yet
    m.acquire(1, None)  # h1 wants it again (it re-enters: a place was free)
    assert h1.holding
    assert not waits(m.store.execute(Read(NAME)))  # back, after h2 in the order
    m.release(1)
    left = m.store.execute(Read(NAME))
    assert waits(left)
    m.advance(1)  # a leaver that does not come back holds nobody up for long
    assert not waits(left)


def test_a_leaver_that_does_not_come_back_costs_the_holders_behind_one_gap_in_all() -> None:
    """A holder that leaves and does not join the line again (a reader that next
    asks as a writer, under another instance ID) is waited for TURN_GAP from
    when a holder behind first saw it gone, also while that holder was still
    waiting for those before it: not a TURN_GAP more by each holder in turn."""
    m = SemaphoreModel()
    for i in (1, 2, 3):
        m.acquire(i, None)
    _, waits = m.turn_now(3)
    m.release(1)  # h1 leaves for good
    assert waits(m.store.execute(Read(NAME)))  # h2 came in before h3 and holds
    m.advance(1)  # longer than TURN_GAP: h1 is not coming back
    m.release(2)
    m.acquire(2, None)  # h2 is back at once (it re-enters: a place was free)
    assert m.hosts[2].holding
    assert not waits(m.store.execute(Read(NAME)))  # h3's turn now, h1 not awaited again


def test_a_leaver_back_under_another_instance_id_is_not_awaited() -> None:
    """A worker that leaves and asks next for the other side of a readers-writer
    lock joins under another instance ID: as many newcomers as leavers not
    back are their joins, and the holders behind do not wait for them."""
    m = SemaphoreModel()
    for i in (1, 2, 3):
        m.acquire(i, None)
    m.acquire(4, None)  # the semaphore is full: h4 waits in line
    got, waits = m.turn_now(2)
    assert waits(got)  # h1 came in first and holds
    m.release(1)  # h1 leaves (and lets h4 in)
    assert waits(m.store.execute(Read(NAME)))  # h1 is not back yet
    m.acquire(5, None)  # h1's worker asks again, as h5: it joins the line
    assert not waits(m.store.execute(Read(NAME)))


def test_a_newcomer_before_anyone_left_is_nobody_s_join() -> None:
    """A newcomer that came while no leaver was missing (a worker that was
    between two acquisitions when we got the lock) does not stand for a
    leaver's join that is still to come."""
    m = SemaphoreModel()
    for i in (1, 2, 3):
        m.acquire(i, None)
    _, waits = m.turn_now(2)
    m.acquire(4, None)  # a stranger joins the line while all are in
    assert waits(m.store.execute(Read(NAME)))  # h1 came in first and holds
    m.release(1)
    assert waits(m.store.execute(Read(NAME)))  # h1's join is still to come


def test_a_crowd_entering_at_once_spreads_out_instead_of_retrying_together() -> None:
    """Many readers starting together enter directly, without joining the line:
    a write that fails because two or more others entered since its copy is a
    crowd too, and pauses (a spread Sleep) before the next try."""
    m = SharedModel()
    m.acquire(2, None)
    m.release(2)
    free = m.store.execute(Read(NAME))
    h3 = m.hosts[3]
    flow = m.acquire_flow(h3, None)
    assert isinstance(next(flow), Read)
    write = flow.send(free)
    assert isinstance(write, Replace)
    m.acquire(4, None)  # two others enter first, as h3's write is on its way
    m.acquire(5, None)
    assert m.hosts[4].holding and m.hosts[5].holding
    look = flow.send(CONFLICT)
    assert isinstance(look, Watch) and look.quick
    after = flow.send(m.store.execute(Read(NAME)))
    assert isinstance(after, Sleep), after  # not straight back into the crowd
    m.advance(4)
    look = flow.send(None)  # then what the watch received meanwhile: no read
    assert isinstance(look, Watch) and look.quick and look.until == m.mono
    write = flow.send(m.store.execute(Read(NAME)))
    assert isinstance(write, Replace) and write.version == m.store.version_of(NAME)


def test_a_crowd_met_again_spreads_twice_as_wide() -> None:
    """Those a write sees entered since its copy are only the first of a crowd
    that started at once: meeting a crowd again, the pause spreads over twice
    as many writes' time."""
    m = SharedModel()
    m.acquire(2, None)
    m.release(2)
    h3 = m.hosts[3]
    flow = m.acquire_flow(h3, None)
    assert isinstance(next(flow), Read)
    pauses = []
    effect = flow.send(m.store.execute(Read(NAME)))
    for pair in ((4, 5), (1, 2)):
        assert isinstance(effect, Replace)
        for i in pair:  # two others enter first, again
            m.acquire(i, None)
        assert isinstance(flow.send(CONFLICT), Watch)
        pause = flow.send(m.store.execute(Read(NAME)))
        assert isinstance(pause, Sleep)
        pauses.append(pause.until - m.mono)
        m.advance(4)
        assert isinstance(flow.send(None), Watch)
        effect = flow.send(m.store.execute(Read(NAME)))
    assert pauses[1] == pytest.approx(2 * pauses[0])


def test_a_writer_joining_among_readers_entering_does_not_pause() -> None:
    """The crowd a join meets is of others joining: readers entering beside
    the holders while a writer's join is on its way do not make the writer
    pause (they would enter on during its pause, ahead of it)."""
    m = SharedModel()
    m.acquire(2, None)  # a reader holds
    held = m.store.execute(Read(NAME))
    h0 = m.hosts[0]
    flow = m.acquire_flow(h0, None)
    assert isinstance(next(flow), Read)
    join = flow.send(held)
    assert isinstance(join, Replace) and join.state.leases.keys() == {"h2"}
    m.acquire(4, None)  # two readers enter first
    m.acquire(5, None)
    look = flow.send(CONFLICT)
    assert isinstance(look, Watch)
    again = flow.send(m.store.execute(Read(NAME)))
    assert isinstance(again, Replace), again  # joins again at once


def test_a_crowd_leaving_the_line_looks_on_the_watch_not_by_reads() -> None:
    """Many waiters timing out together leave the line at once: a leave that
    meets others' takes the newer version from its watch, pauses among them,
    and takes what the watch received meanwhile (no read after the first)."""
    m = SharedModel()
    m.acquire(0, None)  # a writer holds; readers line up
    for i in (2, 3, 4, 5):
        m.acquire(i, None)
    h3 = m.hosts[3]
    m.stop_waiting(3, cancel=False)  # its acquire gives up: it leaves the line by hand
    h3.dead = False
    flow = m.release_flow(h3, None, None)
    assert isinstance(next(flow), Read)
    leave = flow.send(m.store.execute(Read(NAME)))
    assert isinstance(leave, Replace)
    m.stop_waiting(2, cancel=True)  # two others leave first
    m.stop_waiting(4, cancel=True)
    look = flow.send(CONFLICT)
    assert isinstance(look, Watch) and look.quick
    pause = flow.send(m.store.execute(Read(NAME)))
    assert isinstance(pause, Sleep), pause
    m.advance(4)
    look = flow.send(None)
    assert isinstance(look, Watch) and look.quick and look.until == m.mono
    leave = flow.send(m.store.execute(Read(NAME)))
    assert isinstance(leave, Replace) and leave.version == m.store.version_of(NAME)
    m.store.execute(leave)
    line = read_queue(m.store.execute(Read(NAME)).meta)
    assert [w.instance_id for w in line] == ["h5"]


def test_a_release_waits_for_its_turn_on_the_open_watch_without_requests() -> None:
    m = SemaphoreModel()
    for i in (1, 2):
        m.acquire(i, None)
    h2 = m.hosts[2]
    got, turn = m.turn_now(2)
    flow = release_flow(
        m.intent(h2),
        h2.clock,
        got,
        h2.token,
        decide=decide_shared_release,
        settle_until=m.mono + TURN_CAP,
        turn=turn,
    )
    look = next(flow)
    assert isinstance(look, Watch) and look.quick and not look.open  # no watch opened for it
    m.release(1)  # h1 leaves: the watch shows it; h2 waits on for h1's join
    look = flow.send(m.store.execute(Read(NAME)))
    assert isinstance(look, Watch) and look.version == m.store.version_of(NAME)
    m.acquire(1, None)  # h1 is back: h2's turn
    write = flow.send(m.store.execute(Read(NAME)))
    assert isinstance(write, Replace) and write.version == m.store.version_of(NAME)
    # Nothing newer within TURN_GAP (the store keeps no watch): the release goes ahead.
    flow = release_flow(
        m.intent(h2),
        h2.clock,
        write.base,
        h2.token,
        decide=decide_shared_release,
        settle_until=m.mono + TURN_CAP,
        turn=lambda record: 0.1,
    )
    assert isinstance(next(flow), Watch)
    assert isinstance(flow.send(UNCHANGED), Replace)


@pytest.mark.parametrize("model", [SharedModel, SemaphoreModel])
@pytest.mark.parametrize("late", [12, 13, 14, 16])
def test_a_reader_paused_past_its_admission_holds_later_only_with_a_newer_token(
    model: type[SharedModel], late: int
) -> None:
    """h2 (shared, 3 s) is admitted and reads it ``late`` quarters of a second
    later, when its claim has run out or nearly: it writes its lease again, and
    that write stops on the way (a paused process) while the writer h0 goes past
    it and holds. Then the write lands on a newer version, h2 joins the line again
    and is admitted anew: it must hold with a token larger than the writer's, not
    the one it was first admitted with."""
    m = model()
    h0, h2 = m.hosts[0], m.hosts[2]
    m.acquire(3, None)  # h3 (shared) holds
    m.acquire(0, None)  # h0, exclusive: waits in line
    m.acquire(2, None, slow=True)  # h2 lines up behind the writer
    m.poke(2)  # its join lands
    assert isinstance(h2.waiting_on, Watch)
    m.release(3)  # h0 is handed the lock
    m.poke(0)
    m.release(0)  # h2 is admitted in the same write
    admitted = m.store.execute(Read(NAME))
    assert admitted.state is not None and "h2" in admitted.state.leases
    m.advance(late)
    m.poke(2)  # h2 reads its admission late; a write it sends now stays on the way
    m.acquire(0, None)  # the writer wants it back
    m.go_past_and_hand_back(2, 0)
    assert (h2.token or 0) > (h0.token or 0)
    m.holders_within_bounds()
    m.teardown()
