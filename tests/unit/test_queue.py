"""The line of waiters: its stored form and the core's decisions about it (pure)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockheed._clock import ServerClock
from lockheed._core import (
    CLAIM_WINDOW,
    RESERVED_BY,
    RESERVED_EXPIRES,
    SETTLE,
    TOKEN_HOLDER_KEY,
    TOKEN_KEY,
    Accept,
    Decision,
    Intent,
    Nothing,
    Replace,
    Wait,
    Watch,
    Write,
    decide_acquire,
    decide_release,
    release_flow,
    settle_turn,
)
from lockheed._queue import QUEUE_KEY, Waiter, place_in_line, place_of, queue_meta, read_queue
from lockheed._shared_core import (
    TOKENS_KEY,
    SharedIntent,
    decide_shared_acquire,
    decide_shared_release,
)
from lockheed._state import NEVER, Lease, LockState, Record, format_time

UTC = timezone.utc
T0 = datetime(2026, 11, 30, 7, tzinfo=UTC)
NAME = "jobs"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def me(who: str = "me", duration: float | None = 30, fair: bool = True) -> Intent:
    length = None if duration is None else timedelta(seconds=duration)
    return Intent(NAME, who, length, fair=fair)


# What a hand-off to "me" at version 40 stamps (lockheed._core.decide_release).
HANDED_FROM_40 = {TOKEN_KEY: "40", TOKEN_HOLDER_KEY: "me"}


def rec(
    *leases: Lease,
    line: tuple[str, ...] = (),
    version: str = "40",
    meta: dict[str, str] | None = None,
) -> Record:
    state = LockState(NAME, "mutex").with_leases(leases)
    stored = dict(meta or {})
    stored.update({k: v for k, v in queue_meta(Waiter(w, None) for w in line).items() if v})
    return Record(NAME, version, state, stored)


def line_of(decision: Decision) -> list[str]:
    assert isinstance(decision, Write), decision
    return [w.instance_id for w in read_queue(_merged(decision))]


def _merged(write: Write) -> dict[str, str]:
    return {k: v for k, v in write.meta.items() if v is not None}


def acquire(r: Record | None, i: Intent | None = None, free_for: float = 0.0) -> Decision:
    return decide_acquire(i or me(), r, at(0), at(1), None, free_for)


# ------------------------------------------------------------ stored form


def test_the_line_round_trips_in_order() -> None:
    line = (
        Waiter("a", timedelta(seconds=30)),
        Waiter("b", None),
        Waiter("c", timedelta(seconds=0.5)),
    )
    stored = queue_meta(line)
    assert json.loads(stored[QUEUE_KEY] or "") == [
        {"id": "a", "d": 30.0},
        {"id": "b", "d": 0},
        {"id": "c", "d": 0.5},
    ]
    assert read_queue({QUEUE_KEY: stored[QUEUE_KEY] or ""}) == line
    assert queue_meta(()) == {QUEUE_KEY: None}  # an empty line leaves no annotation


def test_a_place_in_the_stored_line() -> None:
    meta = {QUEUE_KEY: queue_meta(Waiter(w, None) for w in ("a", "b", "c"))[QUEUE_KEY] or ""}
    assert [place_in_line(meta, w) for w in ("a", "b", "c", "z")] == [0, 1, 2, None]
    assert place_in_line({}, "a") is None
    assert place_in_line({QUEUE_KEY: "not json"}, "a") is None


@pytest.mark.parametrize(
    "text",
    ["", "not json", "{}", '"x"', "[1, 2]", '[{"d": 3}]', '[{"id": "", "d": 1}]', "[null]"],
)
def test_an_unreadable_line_is_empty(text: str) -> None:
    assert read_queue({QUEUE_KEY: text}) == ()


def test_bad_entries_are_skipped_and_duplicates_kept_once() -> None:
    text = json.dumps(
        [{"id": "a", "d": 1}, {"id": "b", "d": -1}, {"id": "a", "d": 2}, {"id": "c", "d": True}]
    )
    assert read_queue({QUEUE_KEY: text}) == (Waiter("a", timedelta(seconds=1)),)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('{"id":"a","d":true,"v":5}', ()),  # bool is no duration, even after a 1 was read
        ('{"id":"a","d":1,"v":true}', (Waiter("a", timedelta(seconds=1)),)),
        ('{"id":"a","d":1.0,"v":5}', (Waiter("a", timedelta(seconds=1), since=5),)),
        ('{"id":"a","d":-1,"v":5}', ()),
        ('{"id":"a","d":1,"v":-5}', (Waiter("a", timedelta(seconds=1)),)),
        ('{"id":"","d":1,"v":5}', ()),
    ],
)
def test_entries_are_remembered_by_their_exact_values(
    entry: str, expected: tuple[Waiter, ...]
) -> None:
    # The usual {"id", "d", "v"} entries are made once and remembered: a
    # look-alike of another type must still be read on its own terms.
    assert read_queue({QUEUE_KEY: '[{"id":"a","d":1,"v":5}]'}) == (
        Waiter("a", timedelta(seconds=1), since=5),
    )
    assert read_queue({QUEUE_KEY: f"[{entry}]"}) == expected


def test_entries_as_lockheed_writes_them_are_remembered() -> None:
    from lockheed import _queue

    line = (Waiter("w1", timedelta(seconds=30), since=8), Waiter("w2", None, since=9))
    stored = queue_meta(line)[QUEUE_KEY] or ""
    assert read_queue({QUEUE_KEY: stored}) == line
    assert {("w1", 30.0, 8), ("w2", 0, 9)} <= set(_queue._ENTRIES)


@given(st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=40))
def test_any_line_round_trips(ids: list[str]) -> None:
    line = tuple(Waiter(i, timedelta(seconds=n + 1)) for n, i in enumerate(ids))
    stored = queue_meta(line)[QUEUE_KEY]
    assert read_queue({QUEUE_KEY: stored} if stored else {}) == line


# ------------------------------------------------------------ joining


def test_a_contender_joins_the_line_of_a_held_lock() -> None:
    decision = acquire(rec(Lease("holder", at(20)), line=("a",)))
    assert line_of(decision) == ["a", "me"]
    assert isinstance(decision, Write)
    assert decision.token is None and decision.expires is None  # joining is not taking
    assert dict(decision.state.leases) == {"holder": Lease("holder", at(20))}


def test_a_waiter_already_in_line_waits_for_the_holder() -> None:
    decision = acquire(rec(Lease("holder", at(20)), line=("a", "me")))
    assert decision == Wait(at(20), "holder", at(20), "held")


def test_a_racing_contender_does_not_join() -> None:
    decision = acquire(rec(Lease("holder", at(20))), me(fair=False))
    assert isinstance(decision, Wait)


def test_a_newcomer_joins_behind_waiters_of_a_free_lock() -> None:
    assert line_of(acquire(rec(line=("a",)))) == ["a", "me"]


def test_a_racing_newcomer_takes_a_free_lock_ahead_of_the_line() -> None:
    decision = acquire(rec(line=("a",)), me(fair=False))
    assert isinstance(decision, Write) and decision.token == 40
    assert QUEUE_KEY not in decision.meta  # the line is left as it is


# ------------------------------------------------------------ taking


def test_the_first_in_line_takes_a_free_lock_and_leaves_the_line() -> None:
    decision = acquire(rec(line=("me", "b")))
    assert isinstance(decision, Write)
    assert decision.token == 40 and decision.expires == at(31)
    assert dict(decision.state.leases) == {"me": Lease("me", at(31))}
    assert line_of(decision) == ["b"]


def test_the_first_in_line_takes_over_an_expired_holder() -> None:
    decision = acquire(rec(Lease("gone", at(-1)), line=("me", "b")))
    assert isinstance(decision, Write) and set(decision.state.leases) == {"me"}


def test_a_later_waiter_waits_a_window_per_waiter_ahead_of_it() -> None:
    decision = acquire(rec(line=("a", "b", "me")), free_for=3.0)
    assert decision == Wait(None, "a", None, "queued", after=2 * CLAIM_WINDOW - 3.0)


def test_a_later_waiter_takes_a_free_lock_the_waiters_ahead_let_be() -> None:
    decision = acquire(rec(line=("a", "b", "me", "d")), free_for=2 * CLAIM_WINDOW)
    assert isinstance(decision, Write) and set(decision.state.leases) == {"me"}
    assert line_of(decision) == ["d"]  # those ahead are presumed gone


def test_force_takes_over_and_leaves_the_line() -> None:
    from lockheed._conditions import acquired

    forced = Intent(NAME, "me", timedelta(seconds=30), force=acquired(True))
    decision = acquire(rec(Lease("holder", at(20)), line=("a", "me")), forced)
    assert isinstance(decision, Write) and set(decision.state.leases) == {"me"}
    assert line_of(decision) == ["a"]


# ------------------------------------------------------------ hand-off


def test_a_release_hands_the_lock_to_the_first_in_line_in_the_same_write() -> None:
    r = rec(Lease("me", at(20)), line=("a", "b"), meta={TOKEN_KEY: "31", TOKEN_HOLDER_KEY: "me"})
    decision = decide_release(me(), r, at(0), 31, at(1))
    assert isinstance(decision, Write)
    assert dict(decision.state.leases) == {"a": Lease("a", at(1 + CLAIM_WINDOW))}
    assert decision.meta[TOKEN_KEY] == "40" and decision.meta[TOKEN_HOLDER_KEY] == "a"
    assert line_of(decision) == ["b"]


def test_a_hand_off_lasts_no_longer_than_the_waiters_own_lease() -> None:
    stored = {k: v for k, v in queue_meta([Waiter("a", timedelta(seconds=2))]).items() if v}
    r = Record(NAME, "40", LockState(NAME, "mutex").with_leases([Lease("me", at(20))]), stored)
    decision = decide_release(me(), r, at(0), 31, at(1))
    assert isinstance(decision, Write)
    assert dict(decision.state.leases) == {"a": Lease("a", at(3))}


def test_a_release_with_nobody_in_line_frees_the_lock() -> None:
    decision = decide_release(me(), rec(Lease("me", at(20))), at(0), 31, at(1))
    assert isinstance(decision, Write) and dict(decision.state.leases) == {}
    assert decision.meta[TOKEN_HOLDER_KEY] == "me"


def test_a_waiter_that_gives_up_leaves_the_line() -> None:
    decision = decide_release(
        me(), rec(Lease("holder", at(20)), line=("a", "me", "b")), at(0), None
    )
    assert line_of(decision) == ["a", "b"]
    assert isinstance(decision, Write) and set(decision.state.leases) == {"holder"}


@pytest.mark.parametrize("kind", ["mutex", "shared", "semaphore"])
def test_a_waiter_leaving_waits_while_a_go_writer_has_reserved_the_object(kind: str) -> None:
    """Between Go's reservation and its second update, our write would make that
    update fail; a Go holder renewing so is never told, and its lease runs out."""
    reservation = {RESERVED_BY: "go", RESERVED_EXPIRES: format_time(at(30))}
    r = rec(Lease("go", at(20)), line=("a", "me"), meta=reservation)
    assert r.state is not None
    r = replace(r, state=replace(r.state, lock_type=kind))

    def decide(record: Record, now: float) -> Decision:
        if kind == "mutex":
            return decide_release(me(), record, at(now), None)
        intent = SharedIntent(NAME, "me", timedelta(seconds=30), lock_type=kind)
        return decide_shared_release(intent, record, at(now), None)

    assert decide(r, 0) == Wait(at(30), "go", at(30), "reserved")
    assert line_of(decide(r, 30)) == ["a"]  # once it has run out
    mine = {**reservation, RESERVED_BY: "me"}  # our own (a Go instance of ours) stops nothing
    assert line_of(decide(replace(r, meta={**r.meta, **mine}), 0)) == ["a"]


def test_leaving_a_line_we_are_not_in_writes_nothing() -> None:
    decision = decide_release(me(), rec(Lease("holder", at(20)), line=("a",)), at(0), None)
    assert isinstance(decision, Nothing)


def test_the_waiter_handed_the_lock_accepts_it_without_writing() -> None:
    r = rec(Lease("me", at(5)), line=("b",), meta={TOKEN_KEY: "40", TOKEN_HOLDER_KEY: "me"})
    assert acquire(r) == Accept(40, at(5))


def test_a_lease_of_ours_without_our_token_is_written_again() -> None:
    decision = acquire(rec(Lease("me", at(5)), meta={TOKEN_KEY: "7", TOKEN_HOLDER_KEY: "other"}))
    assert isinstance(decision, Write) and decision.token == 40


@pytest.mark.parametrize("kind", ["mutex", "shared", "semaphore"])
def test_a_token_kept_across_a_loss_is_not_stamped_on_a_new_grant(kind: str) -> None:
    """An acquire whose hand-off came too late to hold (token 12) keeps that
    token to write its lease again; if meanwhile others held the lock and then
    handed it to this instance anew (token 50 stored for it), the old token is
    stale: the new grant's is the one to hold, never 12 after them."""
    regranted = rec(Lease("me", at(5)), version="55")
    if kind == "mutex":
        r = replace(regranted, meta={TOKEN_KEY: "50", TOKEN_HOLDER_KEY: "me"})
        decision = decide_acquire(me(), r, at(0), at(1), 12)
        assert decision == Accept(50, at(5))
        # The grant it kept the token for, still stored: written again with it.
        same = replace(regranted, meta={TOKEN_KEY: "12", TOKEN_HOLDER_KEY: "me"})
        again = decide_acquire(me(), same, at(0), at(1), 12)
        assert isinstance(again, Write) and again.token == 12
        return
    assert regranted.state is not None
    r = replace(
        regranted,
        state=replace(regranted.state, lock_type=kind),
        meta={**({"lockheed/limit": "2"} if kind == "semaphore" else {}),
              TOKENS_KEY: '{"me":50}'},
    )  # fmt: skip
    limit = 2 if kind == "semaphore" else None
    intent = SharedIntent(NAME, "me", timedelta(seconds=30), lock_type=kind, limit=limit)
    decision = decide_shared_acquire(intent, r, at(0), at(1), 12)
    assert decision == Accept(50, at(5))
    same = replace(r, meta={**r.meta, TOKENS_KEY: '{"me":12}'})
    again = decide_shared_acquire(intent, same, at(0), at(1), 12)
    assert isinstance(again, Write) and again.token == 12


def test_a_hand_off_of_a_never_expiring_lock_is_still_short() -> None:
    r = rec(Lease("me", NEVER), line=("a",))
    decision = decide_release(me(duration=None), r, at(0), 3, at(1))
    assert isinstance(decision, Write)
    assert decision.state.leases["a"].expires == at(1 + CLAIM_WINDOW)


def test_a_hand_off_gives_the_lock_the_waiters_tags() -> None:
    line = [Waiter("a", None, ("nightly", "b"), True)]
    stored = {k: v for k, v in queue_meta(line).items() if v}
    assert read_queue(stored) == tuple(line)
    state = LockState(NAME, "mutex", tags=("old",)).with_leases([Lease("me", at(20))])
    decision = decide_release(me(), Record(NAME, "40", state, stored), at(0), 31, at(1))
    assert isinstance(decision, Write)
    assert decision.state.tags == ("nightly", "b")  # reset: exactly the waiter's tags


def test_joining_records_the_tags_asked_for() -> None:
    tagged = Intent(NAME, "me", timedelta(seconds=30), tags=("x",))
    decision = acquire(rec(Lease("holder", at(20))), tagged)
    assert isinstance(decision, Write)
    (entry,) = read_queue(_merged(decision))
    assert entry.tags == ("x",) and not entry.reset_tags


# ------------------------------------------------------------ keeping one's place


def dated(*line: tuple[str, int | None], holder: Lease | None = None) -> Record:
    """A record whose waiters carry the versions at which they began to ask."""
    stored = {k: v for k, v in queue_meta(Waiter(w, None, since=v) for w, v in line).items() if v}
    state = LockState(NAME, "mutex").with_leases([holder] if holder else [])
    return Record(NAME, "50", state, stored)


def test_the_version_a_waiter_began_to_ask_at_round_trips() -> None:
    line = (Waiter("a", None, since=7), Waiter("b", timedelta(seconds=3)))
    stored = queue_meta(line)
    assert json.loads(stored[QUEUE_KEY] or "") == [
        {"id": "a", "d": 0, "v": 7},
        {"id": "b", "d": 3.0},
    ]
    assert read_queue({QUEUE_KEY: stored[QUEUE_KEY] or ""}) == line


@pytest.mark.parametrize("bad", ['"7"', "-1", "true", "1.5", "null"])
def test_an_unreadable_version_counts_as_unknown(bad: str) -> None:
    text = f'[{{"id": "a", "d": 1, "v": {bad}}}]'
    assert read_queue({QUEUE_KEY: text}) == (Waiter("a", timedelta(seconds=1)),)


@pytest.mark.parametrize(
    ("line", "since", "place"),
    [
        ((), 5, 0),
        ((("a", 3), ("b", 4)), 5, 2),  # both asked before: behind them
        ((("a", 3), ("b", 9)), 5, 1),  # b asked later and only won the race to join
        ((("a", 6), ("b", 9)), 5, 0),
        ((("a", 5), ("b", 9)), 5, 1),  # the same version: the one that joined first stays ahead
        ((("a", None), ("b", 9)), 5, 1),
        ((("a", 9), ("b", None)), 5, 2),  # an undated entry is never passed, nor anyone ahead
        ((("a", 9),), None, 1),  # an undated newcomer joins at the end
    ],
)
def test_a_newcomer_joins_ahead_of_the_trailing_waiters_that_asked_later(
    line: tuple[tuple[str, int | None], ...], since: int | None, place: int
) -> None:
    queue = tuple(Waiter(w, None, since=v) for w, v in line)
    assert place_of(queue, since) == place


def test_losing_the_race_to_join_keeps_the_contenders_turn() -> None:
    # me began to ask at version 44; b began at 47 and its join landed first.
    r = dated(("a", 40), ("b", 47), holder=Lease("h", at(20)))
    decision = decide_acquire(me(), r, at(0), at(1), since=44)
    assert line_of(decision) == ["a", "me", "b"]
    (_, mine, _) = read_queue(_merged(decision))  # type: ignore[arg-type]
    assert mine.since == 44


def test_a_contender_that_would_be_first_in_line_takes_a_free_lock_in_one_write() -> None:
    r = dated(("b", 47))  # free: b won the race to join, and has not taken it yet
    decision = decide_acquire(me(), r, at(0), at(1), since=44)
    assert isinstance(decision, Write) and set(decision.state.leases) == {"me"}
    assert QUEUE_KEY not in decision.meta  # the line stays as it is: b is still in it


@given(
    st.lists(st.integers(0, 30), max_size=8),
    st.integers(0, 30),
)
def test_nobody_is_passed_by_a_newcomer_that_began_to_ask_after_it(
    versions: list[int], since: int
) -> None:
    queue = tuple(Waiter(f"w{i}", None, since=v) for i, v in enumerate(sorted(versions)))
    place = place_of(queue, since)
    assert all(w.since is not None and w.since > since for w in queue[place:])
    assert all(w.since is not None and w.since <= since for w in queue[:place])


# ------------------------------------------------------------ settling a fresh hand-off


def test_a_fresh_holder_waits_only_while_the_one_that_handed_it_over_is_not_back() -> None:
    before = rec(Lease("h", at(30)), line=("me", "b"), version="40")
    handed = rec(Lease("me", at(5)), line=("b",), version="41", meta=HANDED_FROM_40)
    waits = settle_turn("me", before, handed)
    assert waits(handed) == SETTLE  # h has not joined again yet
    assert waits(rec(Lease("me", at(5)), line=("b", "c"), version="42")) == SETTLE  # someone else
    assert waits(rec(Lease("me", at(5)), line=("b", "h"), version="42")) == 0  # h is back
    assert waits(rec(Lease("me", at(5)), Lease("h", at(9)), version="42")) == 0  # h holds too


def test_a_version_before_that_the_hand_off_did_not_replace_is_not_trusted() -> None:
    # Out of view, a waiter last saw an older version than the one the hand-off
    # replaced (its token, 40): whoever held it then ("x", back in line since)
    # need not be who handed the lock over. It waits for a join written after
    # the hand-off: an entry that began to ask at a version above 40.
    older = rec(Lease("x", at(30)), line=("me", "b"), version="33")

    def at_version(version: str, *line: tuple[str, int]) -> Record:
        meta = {**HANDED_FROM_40}
        meta.update(
            {k: v for k, v in queue_meta(Waiter(w, None, since=v) for w, v in line).items() if v}
        )
        return rec(Lease("me", at(5)), version=version, meta=meta)

    handed = at_version("41", ("b", 30), ("x", 36))
    waits = settle_turn("me", older, handed)
    assert waits(handed) == SETTLE  # with "x" in line, the stale copy would say 0
    assert waits(at_version("42", ("b", 30), ("x", 36), ("h", 41))) == 0  # h joined after it
    assert waits(at_version("42", ("b", 30))) == SETTLE  # "x" left: no join after the hand-off
    # The join may come with the hand-off: the version given is already the newer one.
    newer = at_version("42", ("b", 30), ("h", 41))
    assert settle_turn("me", older, newer)(newer) == 0


def test_without_a_version_before_or_a_token_a_fresh_holder_waits_for_any_newer_one() -> None:
    handed = rec(Lease("me", at(5)), line=("b",), version="41")  # no token stamped for it
    waits = settle_turn("me", None, handed)
    assert waits(handed) == SETTLE
    assert waits(rec(Lease("me", at(5)), line=("b",), version="42")) == 0


@pytest.mark.parametrize(("back", "first"), [(True, Replace), (False, Watch)])
def test_a_release_settles_only_when_the_join_it_waits_for_is_not_in_its_copy(
    back: bool, first: type
) -> None:
    # The join of the instance that handed the lock over may arrive with the
    # hand-off itself: waiting then for a newer version would wait for nothing.
    clock = ServerClock(monotonic=lambda: 100.0, wall=lambda: at(1).timestamp())
    clock.observe(int(at(1).timestamp()), 100.0, 100.0)
    before = rec(Lease("h", at(30)), line=("me", "b"), version="40")
    handed = rec(Lease("me", at(5)), line=("b",), version="41", meta=HANDED_FROM_40)
    now = rec(Lease("me", at(5)), line=("b", "h") if back else ("b",), version="42")
    flow = release_flow(
        me(), clock, now, 41, settle_until=100.0 + SETTLE, turn=settle_turn("me", before, handed)
    )
    effect = next(flow)
    assert isinstance(effect, first), effect
    if isinstance(effect, Watch):
        assert effect.quick and not effect.open and effect.until == 100.0 + SETTLE


def test_a_lock_handed_over_releases_at_once_from_a_copy_that_has_the_join() -> None:
    # The shell gives the release the version before the hand-off: a copy in
    # which the instance that handed the lock over has joined again is
    # released from at once, not after SETTLE.
    from lockheed import Lock, MemoryLocker

    # A clock that stands still: the release decides at the moment of the
    # hand-off, however long this host takes between the two calls.
    still = MemoryLocker(wall=lambda: T0.timestamp(), monotonic=lambda: 100.0)
    lock = Lock(NAME, still, instance_id="me")
    before = rec(Lease("h", at(30)), line=("me", "b"), version="40")
    handed = rec(Lease("me", at(5)), line=("b",), version="41", meta=HANDED_FROM_40)
    lock._got_from = (before, handed)
    settle = lock._clock.monotonic() + SETTLE
    now = rec(Lease("me", at(5)), line=("b", "h"), version="42")
    assert isinstance(next(lock._release_flow(now, 41, settle_until=settle)), Replace)
    alone = rec(Lease("me", at(5)), line=("b",), version="41")
    assert isinstance(next(lock._release_flow(alone, 41, settle_until=settle)), Watch)
