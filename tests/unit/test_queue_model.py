"""A stateful model of fair waiting: hosts that line up, wait, are handed the
lock, release it, give up, and die in line, all through the pure core.

Each host runs the core's real flows against a Memory store on a shared fake
clock (the harness, shared with the shared kinds' model, is
``tests/line_model.py``). Checked throughout:

* never two hosts that believe they hold the lock (before their own loss
  deadlines) at the same true moment;
* fencing tokens strictly increase with every new holder;
* the stored line only ever holds hosts that joined and did not leave;

and at the end, no live waiter starves: with holders releasing and time
passing, every host still waiting gets the lock, past any dead ones.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import settings
from hypothesis.stateful import invariant

from line_model import Host, LineModel, event
from lockheed._core import (
    Acquired,
    Flow,
    Intent,
    Replace,
    Watch,
    acquire_flow,
    release_flow,
    renew_flow,
)

NAME = "line"


class QueueModel(LineModel):
    name = NAME

    def __init__(self) -> None:
        super().__init__()
        self.hosts = [
            Host(Intent(NAME, f"h{i}", timedelta(seconds=d)), self.clock())
            for i, d in enumerate((10, 30, 3, 60, 8))
        ]
        self.tokens: list[int] = []

    def acquire_flow(self, host: Host, deadline: float | None) -> Flow:
        return acquire_flow(host.intent, host.clock, deadline, rng=lambda: 0.5)

    def release_flow(self, host: Host, record: Any, token: int | None) -> Flow:
        return release_flow(host.intent, host.clock, record, token)

    def renew_flow(self, host: Host) -> Flow:
        assert host.token is not None
        return renew_flow(host.intent, host.clock, host.record, host.token)

    def check_acquired(self, host: Host, got: Acquired) -> None:
        for other in self.hosts:
            if other is host or not other.holding or other.dead:
                continue
            believes = other.deadline is None or self.mono < other.deadline
            assert not believes, (
                f"{host.intent.instance_id} acquired while {other.intent.instance_id} holds"
            )
        if self.tokens and got.token == self.tokens[-1] == host.token:
            event("took its own lease back: the same token")  # nobody held it in between
        else:
            assert all(got.token > t for t in self.tokens), (got.token, self.tokens)
            self.tokens.append(got.token)
        event("handed over in line" if got.handed else "took the lock")

    @invariant()
    def never_two_holders(self) -> None:
        believers = [h.intent.instance_id for h in self.believers()]
        assert len(believers) <= 1, believers


TestQueueModel = QueueModel.TestCase
TestQueueModel.settings = settings(max_examples=500, stateful_step_count=40, deadline=None)


def test_an_unclaimed_hand_off_passes_to_the_next_only_after_the_first_stops_believing() -> None:
    """The model's rules in a fixed order: a waiter that is handed the lock and never
    claims it (it hangs) gives way to the next in line within the claim window."""
    m = QueueModel()
    m.acquire(0, None)  # h0 holds
    m.acquire(1, None)  # h1 joins the line
    m.acquire(2, None)  # h2 joins behind it
    h0, h1, h2 = m.hosts[:3]
    assert h0.holding and h1.flow is not None and h2.flow is not None
    m.release(0)  # hands the lock to h1 in the same write
    m.poke(1)
    assert h1.holding and h1.deadline is not None
    handed_at = m.mono
    m.poke(2)
    assert h2.flow is not None  # still waiting: h1 holds
    while h2.flow is not None:  # h1 never renews; time passes
        m.advance(1)
        m.poke(2)
    assert h2.holding and (h2.token or 0) > (h1.token or 0)
    assert m.mono >= h1.deadline  # h1 had stopped believing before h2 got it
    assert m.mono - handed_at <= 5 + 2  # the claim window, plus clock resolution
    m.never_two_holders()
    m.teardown()


def test_a_contender_that_loses_the_race_to_join_keeps_its_turn() -> None:
    """h1 began to ask before h2, but h2's join landed first: h1's join meets a
    conflict, and h1 joins ahead of h2, so it is served first."""
    m = QueueModel()
    m.acquire(0, None)  # h0 holds
    h1, h2 = m.hosts[1:3]
    m.acquire(1, None, slow=True)  # h1 has read; its join is in flight
    assert isinstance(h1.waiting_on, Replace)
    m.renew(0)  # the object moves on before h2 begins to ask
    m.acquire(2, None)  # h2 reads and joins: its write lands first
    assert m.stored_line() == ["h2"]
    m.poke(1)  # h1's join lands: a conflict (h2 joined); it pauses, reads, joins again
    for _ in range(50):
        if "h1" in m.stored_line():
            break
        m.advance(1)
        m.poke(1)
    assert m.stored_line() == ["h1", "h2"]
    m.release(0)  # the hand-off goes to h1
    m.poke(1)
    m.poke(2)
    assert h1.holding and not h2.holding
    m.never_two_holders()
    m.teardown()


@pytest.mark.parametrize("late", [12, 13, 14, 16])
def test_a_waiter_paused_past_its_hand_off_holds_later_only_with_a_newer_token(
    late: int,
) -> None:
    """h2 (3 s) is handed the lock and reads it ``late`` quarters of a second later,
    when its claim has run out or nearly: it writes its lease again, and that write
    stops on the way (a paused process) while h1 goes past it and holds. Then the
    write lands on a newer version, h2 joins the line again and is handed the lock
    anew: it must hold with a token larger than h1's, not the one it was handed
    first."""
    m = QueueModel()
    h1, h2 = m.hosts[1:3]
    m.acquire(0, None)  # h0 holds
    m.acquire(2, None, slow=True)  # h2 joins the line
    m.poke(2)  # its join lands
    assert isinstance(h2.waiting_on, Watch)
    m.acquire(1, None)  # h1 joins behind it
    m.release(0)  # hands the lock to h2 in the same write
    m.advance(late)
    m.poke(2)  # h2 reads the hand-off late; a write it sends now stays on the way
    m.go_past_and_hand_back(2, 1)
    assert (h2.token or 0) > (h1.token or 0)
    m.never_two_holders()
    m.teardown()
