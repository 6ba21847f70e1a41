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
    Read,
    acquire_flow,
    release_flow,
    renew_flow,
)
from lockheed._shared_core import (
    SEMAPHORE,
    SHARED,
    TURN_CAP,
    TURN_RECENT,
    SharedIntent,
    decide_shared_acquire,
    decide_shared_release,
    decide_shared_renew,
    release_turn,
    shared_still_behind,
)

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
        )

    def renew_flow(self, host: Host) -> Flow:
        assert host.token is not None
        return renew_flow(
            self.intent(host), host.clock, host.record, host.token, decide=decide_shared_renew
        )

    def check_acquired(self, host: Host, got: Acquired) -> None:
        others = [h for h in self.believers() if h is not host]
        if exclusive(host):
            assert not others, f"{host.intent.instance_id} exclusive beside {others}"
        else:
            assert not any(exclusive(h) for h in others), "shared beside an exclusive holder"
        if self.limit is not None:
            assert len(others) < self.limit, "more holders than the limit"
        if host.holding and got.token == host.token:
            event("took its own lease back: the same token")
        else:
            earlier = [t for t, ex in self.tokens if ex or exclusive(host)]
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
