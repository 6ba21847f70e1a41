"""The pure core: every locking decision, and the sans-I/O flows over the Memory locker."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockheed import LockConflict, LockLost, LockStateError, LockTimeout, MemoryLocker
from lockheed._conditions import Condition, acquired, tags_contain
from lockheed._core import (
    CLAIM_WINDOW,
    CONFLICT,
    MAX_CONFLICTS,
    RESERVED_BY,
    RESERVED_EXPIRES,
    TOKEN_HOLDER_KEY,
    TOKEN_KEY,
    UNCHANGED,
    Accept,
    Acquired,
    Create,
    Decision,
    Effect,
    Flow,
    Intent,
    Nothing,
    Read,
    Refuse,
    Released,
    Replace,
    Sleep,
    Wait,
    Watch,
    Write,
    acquire_flow,
    decide_acquire,
    decide_release,
    decide_renew,
    release_flow,
    renew_flow,
    token_of,
)
from lockheed._queue import Waiter, queue_meta, read_queue
from lockheed._state import NEVER, Lease, LockState, Record, decode_state, encode_state, format_time

UTC = timezone.utc
T0 = datetime(2026, 11, 26, 7, 0, 0, tzinfo=UTC)
NAME = "build"
ME, OTHER, THIRD = "me", "other", "third"
GO = "3f1c9a8e-go-instance"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def intent(
    instance: str = ME,
    duration: float | None = 30,
    tags: tuple[str, ...] = (),
    reset_tags: bool = False,
    force: Condition | None = None,
    fair: bool = False,
) -> Intent:
    """An intent; these tests decide for racing contenders (the line: test_queue.py)."""
    length = None if duration is None else timedelta(seconds=duration)
    return Intent(NAME, instance, length, tags, reset_tags, force, fair)


def lock(
    *leases: Lease,
    tags: tuple[str, ...] = (),
    lock_type: str = "mutex",
    extra: Mapping[str, Any] | None = None,
) -> LockState:
    return LockState(
        NAME, lock_type, tags=tags, extra=MappingProxyType(dict(extra or {}))
    ).with_leases(leases)


def record(
    state: LockState | None,
    *,
    version: str = "7",
    meta: Mapping[str, str] | None = None,
    error: str | None = None,
) -> Record:
    if state is None and error is None:
        error = "lock state is not JSON"
    return Record(NAME, version, state, dict(meta or {}), error)


def reserved(by: str, until: datetime) -> dict[str, str]:
    """Go's reservation annotations (second precision)."""
    return {RESERVED_BY: by, RESERVED_EXPIRES: format_time(until)}


def acquire(
    rec: Record | None, me: Intent | None = None, now: float = 0, slack: float = 1
) -> Decision:
    return decide_acquire(me or intent(), rec, at(now), at(now + slack))


def written(decision: Decision) -> Write:
    assert isinstance(decision, Write), decision
    return decision


def waiting(decision: Decision) -> Wait:
    assert isinstance(decision, Wait), decision
    return decision


def refused(decision: Decision, kind: type[Exception]) -> Exception:
    assert isinstance(decision, Refuse), decision
    assert isinstance(decision.error, kind)
    return decision.error


# ================================================================ decide_acquire


def test_acquire_creates_a_missing_lock_free() -> None:
    """Created without our lease, so that taking it is a replace that carries its token."""
    write = written(acquire(None, intent(tags=("a", "b", "a")), now=0, slack=1))
    assert write.version is None
    assert write.expires is None and write.token is None
    assert write.state == lock(tags=("a", "b"))
    assert dict(write.meta) == {}


def test_acquire_stamps_the_replaced_version_as_the_token() -> None:
    write = written(acquire(record(lock(tags=("a",))), now=0, slack=1))
    assert write.expires == at(31)  # from the latest possible server time
    assert write.token == 7
    assert dict(write.meta) == {TOKEN_KEY: "7", TOKEN_HOLDER_KEY: ME}


def test_acquire_keeps_the_token_only_while_our_lease_is_stored() -> None:
    stored = {TOKEN_KEY: "3", TOKEN_HOLDER_KEY: ME}
    mine = record(lock(Lease(ME, at(5))), meta=stored)
    ours = written(decide_acquire(intent(), mine, at(0), at(1), 3))
    assert ours.token == 3
    # Our lease without that token stored for us: not provably the same grant,
    # so a new one (larger, so never out of order).
    unstamped = written(decide_acquire(intent(), record(lock(Lease(ME, at(5)))), at(0), at(1), 3))
    assert unstamped.token == 7
    gone = written(decide_acquire(intent(), record(lock(Lease(OTHER, at(-1)))), at(0), at(1), 3))
    assert gone.token == 7  # someone else held it since: a new, larger token


def test_acquire_takes_a_free_lock_at_its_version() -> None:
    write = written(acquire(record(decode_state('{"name":"build","lockType":"","leases":null}'))))
    assert write.version == "7"
    assert write.state.lock_type == "mutex"
    assert dict(write.state.leases) == {ME: Lease(ME, at(31))}


def test_acquire_waits_for_a_live_holder() -> None:
    wait = waiting(acquire(record(lock(Lease(OTHER, at(10))))))
    assert wait == Wait(until=at(10), holder=OTHER, expires=at(10), reason="held")


def test_acquire_waits_only_for_a_change_when_the_holder_never_expires() -> None:
    wait = waiting(acquire(record(lock(Lease(OTHER, NEVER)))))
    assert wait == Wait(until=None, holder=OTHER, expires=NEVER, reason="held")


@pytest.mark.parametrize("expired_at", [-3600, -0.000001, 0])
def test_acquire_takes_over_an_expired_lease(expired_at: float) -> None:
    rec = record(lock(Lease(OTHER, at(expired_at)), tags=("x",)))
    write = written(acquire(rec))
    assert write.version == "7"
    assert dict(write.state.leases) == {ME: Lease(ME, at(31))}
    assert write.state.tags == ("x",)


def test_acquire_refreshes_our_own_lease() -> None:
    write = written(acquire(record(lock(Lease(ME, at(5)))), now=2))
    assert dict(write.state.leases) == {ME: Lease(ME, at(33))}
    assert write.expires == at(33)


def test_acquire_without_duration_never_expires() -> None:
    write = written(acquire(record(lock()), intent(duration=None)))
    assert write.expires == NEVER
    assert write.state.leases[ME].expires == NEVER
    assert '"expires":"9999-12-31T23:59:59Z"' in encode_state(write.state)


def test_intent_expiry_is_capped_at_go_infinity() -> None:
    assert intent(duration=None).expiry(at(0)) == NEVER
    assert intent(duration=0.5).expiry(at(0)) == at(0.5)
    assert Intent(NAME, ME, timedelta(seconds=1)).expiry(NEVER - timedelta(seconds=0.5)) == NEVER


@pytest.mark.parametrize("duration", [timedelta(days=365 * 8000), timedelta.max])
def test_a_duration_beyond_year_9999_never_expires(duration: timedelta) -> None:
    """Any non-negative duration is accepted; the lease caps at NEVER instead of overflowing."""
    assert Intent(NAME, ME, duration).expiry(at(0)) == NEVER


def test_acquire_keeps_unknown_fields() -> None:
    rec = record(lock(extra={"future": [1, 2]}))
    assert dict(written(acquire(rec)).state.extra) == {"future": [1, 2]}


# -- skew: a lease is over only when the *earliest* possible server time has passed it


def test_contender_whose_latest_passed_the_expiry_still_waits() -> None:
    rec = record(lock(Lease(OTHER, at(10))))
    wait = waiting(decide_acquire(intent(), rec, at(9.999), at(600)))
    assert wait.holder == OTHER


def test_contender_takes_over_once_its_earliest_reaches_the_expiry() -> None:
    rec = record(lock(Lease(OTHER, at(10))))
    assert written(decide_acquire(intent(), rec, at(10), at(11))).state.leases.keys() == {ME}


@given(
    expiry=st.integers(-10_000, 10_000),
    earliest=st.integers(-10_000, 10_000),
    width=st.integers(0, 10_000),
)
def test_a_live_lease_is_never_taken_whatever_the_skew(
    expiry: int, earliest: int, width: int
) -> None:
    """Milliseconds: takeover happens exactly when the earliest server time reached the expiry."""
    rec = record(lock(Lease(OTHER, at(expiry / 1000))))
    decision = decide_acquire(intent(), rec, at(earliest / 1000), at((earliest + width) / 1000))
    if earliest >= expiry:
        assert written(decision).state.leases.keys() == {ME}
    else:
        assert waiting(decision).holder == OTHER


# -- Go's reservation protocol


def test_acquire_waits_for_another_instances_reservation() -> None:
    rec = record(lock(), meta=reserved(GO, at(20)))
    assert waiting(acquire(rec)) == Wait(until=at(20), holder=GO, expires=at(20), reason="reserved")


@pytest.mark.parametrize("until", [-30, -1, 0])
def test_acquire_ignores_an_expired_reservation(until: float) -> None:
    rec = record(lock(), meta=reserved(GO, at(until)))
    assert written(acquire(rec)).state.leases.keys() == {ME}


def test_acquire_ignores_a_reservation_judged_by_the_earliest_time() -> None:
    rec = record(lock(), meta=reserved(GO, at(20)))
    assert isinstance(decide_acquire(intent(), rec, at(19), at(25)), Wait)
    assert isinstance(decide_acquire(intent(), rec, at(20), at(21)), Write)


def test_a_lease_handed_to_us_is_ours_through_a_go_reservation() -> None:
    """A release handed us the lock while Go had reserved the object: it is ours
    at once (Go finds it held and lets go); waiting out the reservation would
    let the hand-off's short lease run out."""
    handed = {**reserved(GO, at(30)), TOKEN_KEY: "41", TOKEN_HOLDER_KEY: ME}
    rec = record(lock(Lease(ME, at(5))), meta=handed)
    assert acquire(rec) == Accept(41, at(5))


def test_a_reservation_still_holds_off_a_lease_of_ours_that_ran_out() -> None:
    rec = record(lock(Lease(ME, at(-1))), meta=reserved(GO, at(30)))
    assert waiting(acquire(rec)).reason == "reserved"


def test_acquire_ignores_its_own_reservation() -> None:
    rec = record(lock(), meta=reserved(ME, at(20)))
    assert isinstance(acquire(rec), Write)


@pytest.mark.parametrize(
    "meta",
    [
        {RESERVED_BY: "", RESERVED_EXPIRES: "2026-11-26T07:00:20Z"},
        {RESERVED_EXPIRES: "2026-11-26T07:00:20Z"},
        {RESERVED_BY: GO},  # no expiry
        {RESERVED_BY: GO, RESERVED_EXPIRES: "soon"},
    ],
)
def test_acquire_ignores_incomplete_reservations(meta: dict[str, str]) -> None:
    assert isinstance(acquire(record(lock(), meta=meta)), Write)


def test_a_reservation_in_an_offset_zone_counts() -> None:
    rec = record(lock(), meta={RESERVED_BY: GO, RESERVED_EXPIRES: "2026-11-26T08:00:20+01:00"})
    assert waiting(acquire(rec)).until == at(20)


def test_a_reservation_holds_off_even_a_forced_acquire() -> None:
    rec = record(lock(Lease(OTHER, at(10)), tags=("x",)), meta=reserved(GO, at(20)))
    assert waiting(acquire(rec, intent(force=tags_contain("x")))).reason == "reserved"


def test_an_out_of_range_reservation_does_not_crash_the_decision() -> None:
    rec = record(lock(), meta={RESERVED_BY: GO, RESERVED_EXPIRES: "9999-12-31T23:59:59-01:00"})
    assert isinstance(acquire(rec), Write | Wait)


# -- force


def test_force_matching_a_live_holder_takes_over() -> None:
    rec = record(lock(Lease(OTHER, at(10)), tags=("deploy",)))
    write = written(acquire(rec, intent(force=tags_contain("deploy"), tags=("mine",))))
    assert dict(write.state.leases) == {ME: Lease(ME, at(31))}
    assert write.state.tags == ("deploy", "mine")


def test_force_not_matching_waits() -> None:
    rec = record(lock(Lease(OTHER, at(10)), tags=("deploy",)))
    assert waiting(acquire(rec, intent(force=tags_contain("other")))).holder == OTHER


def test_force_on_acquired_sees_live_leases_only() -> None:
    rec = record(lock(Lease(OTHER, at(10))))
    assert isinstance(acquire(rec, intent(force=acquired())), Write)
    assert isinstance(acquire(rec, intent(force=acquired(False))), Wait)


def test_force_takes_over_several_live_leases() -> None:
    rec = record(lock(Lease(OTHER, at(10)), Lease(THIRD, NEVER)))
    assert written(acquire(rec, intent(force=acquired()))).state.leases.keys() == {ME}


# -- malformed and unknown records


def test_malformed_record_is_refused() -> None:
    rec = record(None, error="lock state is not JSON: Expecting value")
    error = refused(acquire(rec), LockStateError)
    assert "not JSON" in str(error)
    assert isinstance(error, LockStateError)
    assert error.lock == NAME


def test_malformed_record_is_taken_when_forced() -> None:
    """Unreadable state is seen as held by someone with no tags."""
    rec = record(None)
    write = written(acquire(rec, intent(force=acquired(), tags=("t",))))
    assert write.version == "7"
    assert write.state == lock(Lease(ME, at(31)), tags=("t",))
    refused(acquire(rec, intent(force=acquired(False))), LockStateError)
    refused(acquire(rec, intent(force=tags_contain("t"))), LockStateError)


def test_unknown_lock_type_is_refused() -> None:
    error = refused(acquire(record(lock(lock_type="rwmutex"))), LockStateError)
    assert "rwmutex" in str(error)


def test_unknown_lock_type_is_replaced_when_forced() -> None:
    rec = record(lock(Lease(OTHER, at(10)), lock_type="rwmutex", tags=("x",)))
    write = written(acquire(rec, intent(force=tags_contain("x"))))
    assert write.state.lock_type == "mutex"
    assert write.state.leases.keys() == {ME}


def test_two_live_leases_in_a_mutex_are_refused() -> None:
    rec = record(lock(Lease(OTHER, at(10)), Lease(THIRD, at(20))))
    error = refused(acquire(rec), LockStateError)
    assert "other" in str(error)
    assert "third" in str(error)


def test_a_live_lease_beside_an_expired_one_is_an_ordinary_holder() -> None:
    rec = record(lock(Lease(OTHER, at(-5)), Lease(THIRD, at(20))))
    assert waiting(acquire(rec)).holder == THIRD


# -- tags


@pytest.mark.parametrize(
    ("stored", "requested", "reset", "expected"),
    [
        (("a", "b"), ("b", "c"), False, ("a", "b", "c")),
        (("a", "b"), ("b", "c"), True, ("b", "c")),
        (("a",), (), False, ("a",)),
        (("a",), (), True, ()),
        ((), ("c", "c"), False, ("c",)),
        (("a", "a"), (), False, ("a",)),
    ],
)
def test_tags_union_or_reset_on_acquire_and_release(
    stored: tuple[str, ...], requested: tuple[str, ...], reset: bool, expected: tuple[str, ...]
) -> None:
    me = intent(tags=requested, reset_tags=reset)
    rec = record(lock(Lease(ME, at(10)), tags=stored))
    assert written(acquire(rec, me)).state.tags == expected
    assert written(decide_release(me, rec, at(0), None)).state.tags == expected


# ================================================================ decide_renew


def renew(rec: Record | None, now: float = 0, token: int | None = 42) -> Decision:
    return decide_renew(intent(), rec, at(now), at(now + 1), token)


def test_renew_moves_our_expiry_and_stamps_the_token() -> None:
    write = written(renew(record(lock(Lease(ME, at(10)), tags=("t",))), now=5))
    assert write.version == "7"
    assert write.expires == at(36)
    assert write.state == lock(Lease(ME, at(36)), tags=("t",))
    assert dict(write.meta) == {TOKEN_KEY: "42", TOKEN_HOLDER_KEY: ME}


def test_renew_without_token_writes_no_annotations() -> None:
    assert dict(written(renew(record(lock(Lease(ME, at(10)))), token=None)).meta) == {}


def test_renew_of_a_deleted_lock_is_lost() -> None:
    error = refused(renew(None), LockLost)
    assert "deleted" in str(error)


def test_renew_of_an_unreadable_lock_is_lost() -> None:
    refused(renew(record(None)), LockLost)


@pytest.mark.parametrize("leases", [(), (Lease(ME, at(-1)),), (Lease(ME, at(0)),)])
def test_renew_of_a_missing_or_expired_lease_is_lost(leases: tuple[Lease, ...]) -> None:
    error = refused(renew(record(lock(*leases))), LockLost)
    assert isinstance(error, LockLost)
    assert error.holder is None
    assert "expired or was removed" in str(error)


def test_renew_after_a_takeover_names_the_new_holder() -> None:
    error = refused(renew(record(lock(Lease(OTHER, at(10))))), LockLost)
    assert isinstance(error, LockLost)
    assert error.holder == OTHER
    assert OTHER in str(error)
    assert error.lock == NAME


def test_renew_with_our_expired_lease_beside_a_new_holder_is_lost() -> None:
    error = refused(renew(record(lock(Lease(ME, at(-1)), Lease(OTHER, at(10))))), LockLost)
    assert isinstance(error, LockLost)
    assert error.holder == OTHER


def test_renew_judges_our_lease_by_the_earliest_time() -> None:
    rec = record(lock(Lease(ME, at(10))))
    assert isinstance(decide_renew(intent(), rec, at(9.5), at(12), 1), Write)
    assert isinstance(decide_renew(intent(), rec, at(10), at(11), 1), Refuse)


def test_renew_writes_through_a_go_reservation() -> None:
    """Our live lease is renewed at once; the reservation is left for Go to clear."""
    rec = record(lock(Lease(ME, at(10))), meta=reserved(GO, at(5)))
    write = written(renew(rec))
    assert write.state.leases[ME].expires == at(31)
    assert RESERVED_BY not in write.meta and RESERVED_EXPIRES not in write.meta


def test_renew_keeps_other_leases_untouched() -> None:
    rec = record(lock(Lease(OTHER, at(-5)), Lease(ME, at(10))))
    assert dict(written(renew(rec)).state.leases) == {
        OTHER: Lease(OTHER, at(-5)),
        ME: Lease(ME, at(31)),
    }


# ================================================================ decide_release


def release(rec: Record | None, me: Intent | None = None, now: float = 0) -> Decision:
    return decide_release(me or intent(), rec, at(now), 9)


def test_release_removes_our_lease() -> None:
    write = written(release(record(lock(Lease(ME, at(10)), tags=("t",)))))
    assert write.version == "7"
    assert write.state == lock(tags=("t",))
    assert dict(write.meta) == {TOKEN_KEY: "9", TOKEN_HOLDER_KEY: ME}
    assert write.expires is None


def test_release_removes_our_expired_lease_too() -> None:
    assert written(release(record(lock(Lease(ME, at(-10)))))).state.leases == {}


def test_release_never_removes_another_holders_lease() -> None:
    rec = record(lock(Lease(OTHER, at(10))))
    nothing = release(rec)
    assert isinstance(nothing, Nothing)
    assert OTHER in nothing.reason


def test_release_of_a_removed_lease_says_so() -> None:
    nothing = release(record(lock(Lease(OTHER, at(-10)))))
    assert nothing == Nothing("our lease was removed")


def test_release_of_a_deleted_or_unreadable_lock_writes_nothing() -> None:
    assert isinstance(release(None), Nothing)
    assert isinstance(release(record(None)), Nothing)


def test_release_writes_through_a_go_reservation() -> None:
    rec = record(lock(Lease(ME, at(10))), meta=reserved(GO, at(5)))
    assert written(release(rec)).state.leases == {}


leases_of_others = st.lists(
    st.builds(
        Lease,
        st.sampled_from([OTHER, THIRD, GO, "x"]),
        st.integers(-100, 100).map(at) | st.just(NEVER),
    ),
    max_size=4,
)


@given(leases_of_others, st.booleans(), st.integers(-100, 100))
def test_release_changes_only_our_lease(others: list[Lease], ours: bool, now: int) -> None:
    leases = [*others, Lease(ME, at(5))] if ours else others
    before = lock(*leases, tags=("t",))
    decision = release(record(before), now=now)
    if ours:
        after = written(decision).state
        assert dict(after.leases) == {k: v for k, v in before.leases.items() if k != ME}
    else:
        assert isinstance(decision, Nothing)


# ================================================================ flows


class FakeTime:
    def __init__(self) -> None:
        self.mono = 100.0
        self.true = T0.timestamp()

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.true += seconds

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.true, UTC)


class Runaway(AssertionError):
    """The flow kept going far longer than it should."""


Hook = Callable[[Effect], None]


def drive(
    flow: Flow,
    locker: MemoryLocker,
    time: FakeTime,
    before_write: Hook | None = None,
    limit: int = 500,
    on_watch: Hook | None = None,
) -> Any:
    """Run a flow to completion: each effect is executed by the locker, its result sent back.

    A watch that would block advances the fake time to the watch's end instead
    (``on_watch``, called first, may write what the watch then sees).
    """
    result: Any = None
    for _ in range(limit):
        try:
            effect = flow.send(result)
        except StopIteration as stop:
            return stop.value
        if isinstance(effect, Watch):
            assert effect.until is not None, "a watch without end would block forever"
            if on_watch is not None:
                on_watch(effect)
            current = locker.execute(Read(effect.name))
            if (current.version if current else None) == effect.version:
                time.advance(max(0.0, effect.until - time.mono))
        elif isinstance(effect, Sleep):
            time.advance(max(0.0, effect.until - time.mono))
            result = None
            continue
        elif isinstance(effect, Create | Replace) and before_write is not None:
            before_write(effect)
        result = locker.execute(effect)
    raise Runaway(f"flow still running after {limit} effects")


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def locker(time: FakeTime) -> MemoryLocker:
    return MemoryLocker(wall=lambda: time.true, monotonic=lambda: time.mono)


def stored(locker: MemoryLocker) -> tuple[LockState, dict[str, str]]:
    raw = locker.raw(NAME)
    assert raw is not None
    return decode_state(raw[0]), raw[1]


def version(locker: MemoryLocker) -> str:
    rec = locker.execute(Read(NAME))
    assert isinstance(rec, Record)
    return rec.version


def take(
    locker: MemoryLocker, time: FakeTime, me: Intent, deadline: float | None = None
) -> Acquired:
    got = drive(acquire_flow(me, locker.clock, deadline), locker, time)
    assert isinstance(got, Acquired)
    return got


def bump(locker: MemoryLocker) -> Hook:
    """A conflicting writer: rewrites the same state, moving the version on."""

    def hook(effect: Effect) -> None:
        current = locker.execute(Read(NAME))
        if isinstance(current, Record):
            assert current.state is not None
            assert (
                locker.execute(Replace(NAME, current.version, current.state, {}, current))
                is not CONFLICT
            )

    return hook


def test_acquire_flow_creates_the_object(locker: MemoryLocker, time: FakeTime) -> None:
    got = take(locker, time, intent(tags=("t",)))
    assert got.token < token_of(got.record)  # the created version, replaced by taking it
    assert got.expires == time.now() + timedelta(seconds=30)
    assert got.sent == time.mono
    state, meta = stored(locker)
    assert state == lock(Lease(ME, got.expires), tags=("t",))
    assert meta == {TOKEN_KEY: str(got.token), TOKEN_HOLDER_KEY: ME}
    assert locker.requests["get"] == 1
    assert locker.requests["create"] == 1
    assert locker.requests["update"] == 1


def test_acquire_flow_times_out_on_a_live_holder(locker: MemoryLocker, time: FakeTime) -> None:
    first = take(locker, time, intent(OTHER))
    time.advance(5)
    with pytest.raises(LockTimeout) as caught:
        drive(acquire_flow(intent(), locker.clock, time.mono), locker, time)
    assert caught.value.holder == OTHER
    assert caught.value.expires == first.expires
    assert caught.value.lock == NAME
    assert stored(locker)[0].leases.keys() == {OTHER}


def test_acquire_flow_waits_for_expiry_then_takes_over(
    locker: MemoryLocker, time: FakeTime
) -> None:
    first = take(locker, time, intent(OTHER, duration=10))
    second = take(locker, time, intent())
    assert time.now() > first.expires
    assert second.token > first.token
    assert stored(locker)[0].leases.keys() == {ME}
    assert locker.requests["watch"] >= 1


def test_acquire_flow_watch_wakes_on_release(locker: MemoryLocker, time: FakeTime) -> None:
    holder = take(locker, time, intent(OTHER, duration=None))
    flow = acquire_flow(intent(), locker.clock, None)
    assert isinstance(next(flow), Read)
    watch = flow.send(locker.execute(Read(NAME)))
    assert isinstance(watch, Watch)
    assert watch.until is None  # the holder never expires: only a change helps
    assert watch.version == holder.record.version
    released = drive(
        release_flow(intent(OTHER), locker.clock, holder.record, holder.token), locker, time
    )
    assert isinstance(released, Released)
    effect = flow.send(locker.execute(Read(NAME)))
    assert isinstance(effect, Replace)
    with pytest.raises(StopIteration) as done:
        flow.send(locker.execute(effect))
    assert isinstance(done.value.value, Acquired)


def test_acquire_flow_watch_timeout_resumes_with_the_same_record(
    locker: MemoryLocker, time: FakeTime
) -> None:
    take(locker, time, intent(OTHER, duration=10))
    flow = acquire_flow(intent(), locker.clock, time.mono + 3)
    next(flow)
    watch = flow.send(locker.execute(Read(NAME)))
    assert isinstance(watch, Watch)
    assert watch.until == time.mono + 3  # the deadline comes before the expiry
    time.advance(3)
    with pytest.raises(LockTimeout):
        flow.send(UNCHANGED)


def test_acquire_flow_takes_a_go_created_object(locker: MemoryLocker, time: FakeTime) -> None:
    locker.put_raw(NAME, '{"name":"build","lockType":"","leases":null}')
    got = take(locker, time, intent())
    assert locker.requests["update"] == 1
    raw = locker.raw(NAME)
    assert raw is not None
    assert raw[0] == (
        '{"name":"build","lockType":"mutex","leases":{"me":{"instanceID":"me",'
        f'"expires":"{format_time(got.expires)}"}}}}}}'
    )


def test_acquire_flow_retries_a_conflicting_write(locker: MemoryLocker, time: FakeTime) -> None:
    locker.put_raw(NAME, encode_state(lock()))
    writes: list[Effect] = []

    def once(effect: Effect) -> None:
        writes.append(effect)
        if len(writes) == 1:
            bump(locker)(effect)

    got = drive(acquire_flow(intent(), locker.clock, time.mono), locker, time, once)
    assert isinstance(got, Acquired)
    assert len(writes) == 2
    assert isinstance(writes[1], Replace)
    assert got.token == int(writes[1].version) < int(version(locker))


def test_acquire_flow_recovers_when_another_creates_first(
    locker: MemoryLocker, time: FakeTime
) -> None:
    def create_first(effect: Effect) -> None:
        if isinstance(effect, Create):
            locker.put_raw(NAME, '{"name":"build","lockType":"","leases":null}')

    got = drive(acquire_flow(intent(), locker.clock, None), locker, time, create_first)
    assert isinstance(got, Acquired)
    assert locker.requests["create"] == 1
    assert locker.requests["update"] == 1


def test_acquire_flow_recreates_an_object_deleted_under_it(
    locker: MemoryLocker, time: FakeTime
) -> None:
    locker.put_raw(NAME, encode_state(lock()))
    deleted: list[Effect] = []

    def delete(effect: Effect) -> None:
        if isinstance(effect, Replace) and not deleted:
            deleted.append(effect)
            locker.delete(NAME)

    got = drive(acquire_flow(intent(), locker.clock, None), locker, time, delete)
    assert isinstance(got, Acquired)
    assert locker.requests["create"] == 1


def test_acquire_flow_without_deadline_gives_up_after_many_conflicts(
    locker: MemoryLocker, time: FakeTime
) -> None:
    locker.put_raw(NAME, encode_state(lock()))
    with pytest.raises(LockConflict):
        drive(acquire_flow(intent(), locker.clock, None), locker, time, bump(locker), limit=1000)
    assert locker.requests["update"] == 2 * (MAX_CONFLICTS + 1)


def test_acquire_flow_with_deadline_stops_retrying_conflicts_at_the_deadline(
    locker: MemoryLocker, time: FakeTime
) -> None:
    locker.put_raw(NAME, encode_state(lock()))

    def slow_bump(effect: Effect) -> None:
        bump(locker)(effect)
        time.advance(1)

    with pytest.raises(LockTimeout, match="other writers kept changing it"):
        drive(acquire_flow(intent(), locker.clock, time.mono + 5), locker, time, slow_bump)
    assert time.mono <= 100 + 5 + 2


def test_non_blocking_acquire_gets_one_retry_after_a_conflict(
    locker: MemoryLocker, time: FakeTime
) -> None:
    locker.put_raw(NAME, encode_state(lock()))
    with pytest.raises(LockTimeout):  # a TimeoutError, as every acquire that gives up
        drive(acquire_flow(intent(), locker.clock, time.mono), locker, time, bump(locker))
    assert locker.requests["update"] == 4  # two attempts, each after a conflicting write
    assert stored(locker)[0].leases == {}


def test_acquire_flow_refuses_a_malformed_object(locker: MemoryLocker, time: FakeTime) -> None:
    locker.put_raw(NAME, "{not json")
    with pytest.raises(LockStateError, match="not JSON"):
        drive(acquire_flow(intent(), locker.clock, None), locker, time)
    assert locker.raw(NAME) == ("{not json", {})


def test_acquire_flow_forced_over_a_malformed_object(locker: MemoryLocker, time: FakeTime) -> None:
    locker.put_raw(NAME, "{not json")
    got = take(locker, time, intent(force=acquired()))
    assert stored(locker)[0] == lock(Lease(ME, got.expires))


def test_acquire_flow_waits_out_a_go_reservation(locker: MemoryLocker, time: FakeTime) -> None:
    locker.put_raw(NAME, encode_state(lock()), reserved(GO, time.now() + timedelta(seconds=30)))
    with pytest.raises(LockTimeout) as caught:
        drive(acquire_flow(intent(), locker.clock, time.mono), locker, time)
    assert caught.value.holder == GO
    assert "reserved" in str(caught.value)
    start = time.mono
    got = take(locker, time, intent())
    assert time.mono - start >= 30
    assert got.record.state is not None
    assert got.record.state.leases.keys() == {ME}


def test_tokens_increase_across_hand_offs(locker: MemoryLocker, time: FakeTime) -> None:
    tokens = []
    for who in [ME, OTHER, ME, THIRD, THIRD]:
        got = take(locker, time, intent(who, duration=10))
        tokens.append(got.token)
        done = drive(release_flow(intent(who), locker.clock, got.record, got.token), locker, time)
        assert done.lost_reason is None
        if who == OTHER:
            locker.delete(NAME)  # a re-created object still yields larger tokens
    assert tokens == sorted(set(tokens))


def test_renew_flow_extends_the_lease(locker: MemoryLocker, time: FakeTime) -> None:
    got = take(locker, time, intent())
    time.advance(20)
    rec, expires, sent = drive(
        renew_flow(intent(), locker.clock, got.record, got.token), locker, time
    )
    assert expires == time.now() + timedelta(seconds=30)
    assert sent == time.mono
    assert isinstance(rec, Record)
    state, meta = stored(locker)
    assert state.leases[ME].expires == expires
    assert meta == {TOKEN_KEY: str(got.token), TOKEN_HOLDER_KEY: ME}
    assert locker.requests["get"] == 1  # the renewal reused the record it had


def test_renew_flow_rereads_a_stale_record(locker: MemoryLocker, time: FakeTime) -> None:
    got = take(locker, time, intent())
    bump(locker)(Read(NAME))
    rec, _, _ = drive(renew_flow(intent(), locker.clock, got.record, got.token), locker, time)
    assert int(rec.version) > int(got.record.version) + 1


def test_renew_flow_after_a_takeover_is_lost(locker: MemoryLocker, time: FakeTime) -> None:
    got = take(locker, time, intent(duration=10))
    time.advance(11)
    take(locker, time, intent(OTHER))
    with pytest.raises(LockLost) as caught:
        drive(renew_flow(intent(), locker.clock, None, got.token), locker, time)
    assert caught.value.holder == OTHER
    assert stored(locker)[0].leases.keys() == {OTHER}


def test_renew_flow_from_an_expired_cached_record_reads_once_to_name_the_holder(
    locker: MemoryLocker, time: FakeTime
) -> None:
    """Our cached lease has expired: lost; one read names whoever holds it now."""
    got = take(locker, time, intent(duration=10))
    time.advance(11)
    take(locker, time, intent(OTHER))
    gets, updates = locker.requests["get"], locker.requests["update"]
    with pytest.raises(LockLost) as caught:
        drive(renew_flow(intent(), locker.clock, got.record, got.token), locker, time)
    assert caught.value.holder == OTHER
    assert locker.requests["get"] == gets + 1
    assert locker.requests["update"] == updates
    assert stored(locker)[0].leases.keys() == {OTHER}


def test_renew_flow_after_a_forced_takeover_is_lost(locker: MemoryLocker, time: FakeTime) -> None:
    got = take(locker, time, intent(tags=("x",)))
    take(locker, time, intent(OTHER, force=tags_contain("x")))
    with pytest.raises(LockLost) as caught:
        drive(renew_flow(intent(), locker.clock, got.record, got.token), locker, time)
    assert caught.value.holder == OTHER


@pytest.mark.parametrize("cached", [True, False])
def test_renew_flow_of_a_deleted_object_is_lost(
    locker: MemoryLocker, time: FakeTime, cached: bool
) -> None:
    got = take(locker, time, intent())
    locker.delete(NAME)
    rec = got.record if cached else None
    with pytest.raises(LockLost, match="deleted"):
        drive(renew_flow(intent(), locker.clock, rec, got.token), locker, time)


def test_renew_flow_is_not_held_up_by_a_go_reservation(
    locker: MemoryLocker, time: FakeTime
) -> None:
    got = take(locker, time, intent())
    locker.put_raw(
        NAME, encode_state(stored(locker)[0]), reserved(GO, time.now() + timedelta(seconds=30))
    )
    start, updates = time.mono, locker.requests["update"]
    drive(renew_flow(intent(), locker.clock, None, got.token), locker, time)
    assert time.mono == start and locker.requests["update"] == updates + 1
    state, meta = stored(locker)
    assert ME in state.leases and meta[RESERVED_BY] == GO  # Go's annotation is not ours to remove


def test_release_flow_removes_our_lease(locker: MemoryLocker, time: FakeTime) -> None:
    got = take(locker, time, intent(tags=("a",)))
    done = drive(
        release_flow(intent(tags=("b",)), locker.clock, got.record, got.token), locker, time
    )
    assert done == Released(done.record, None)
    assert isinstance(done.record, Record)
    state, meta = stored(locker)
    assert state == lock(tags=("a", "b"))
    assert meta == {TOKEN_KEY: str(got.token), TOKEN_HOLDER_KEY: ME}


def test_release_flow_after_a_takeover_leaves_the_new_holder_alone(
    locker: MemoryLocker, time: FakeTime
) -> None:
    got = take(locker, time, intent(duration=10))
    time.advance(10)
    theirs = take(locker, time, intent(OTHER))
    before = locker.raw(NAME)
    done = drive(release_flow(intent(), locker.clock, got.record, got.token), locker, time)
    assert isinstance(done, Released)
    assert done.lost_reason == f"taken over by {OTHER}"
    assert locker.raw(NAME) == before
    assert version(locker) == theirs.record.version


def test_release_flow_of_a_deleted_object(locker: MemoryLocker, time: FakeTime) -> None:
    got = take(locker, time, intent())
    locker.delete(NAME)
    done = drive(release_flow(intent(), locker.clock, got.record, got.token), locker, time)
    assert done == Released(None, "its object was deleted")
    assert locker.raw(NAME) is None


def test_release_flow_is_not_held_up_by_a_go_reservation(
    locker: MemoryLocker, time: FakeTime
) -> None:
    got = take(locker, time, intent())
    locker.put_raw(
        NAME, encode_state(stored(locker)[0]), reserved(GO, time.now() + timedelta(seconds=30))
    )
    start = time.mono
    done = drive(release_flow(intent(), locker.clock, None, got.token), locker, time)
    assert done.lost_reason is None
    assert time.mono == start
    assert stored(locker)[0].leases == {}


def go_holds_and_reserves(locker: MemoryLocker, time: FakeTime, reserved_for: float) -> str:
    """A Go instance holds the lock and has just reserved the object to renew
    (its first update); ``ME`` waits in line behind ``OTHER``. Returns the
    stored lock document."""
    data = encode_state(lock(Lease(GO, time.now() + timedelta(seconds=10))))
    line = queue_meta([Waiter(OTHER, None), Waiter(ME, None)])
    meta = {**{k: v for k, v in line.items() if v}, **reserved(GO, time.now())}
    meta[RESERVED_EXPIRES] = format_time(time.now() + timedelta(seconds=reserved_for))
    locker.put_raw(NAME, data, meta)
    return data


def test_leaving_the_line_waits_for_a_go_writers_second_update(
    locker: MemoryLocker, time: FakeTime
) -> None:
    """Written between Go's reservation and its update, our leave would make that
    update fail: a Go holder's renewal, whose failure Go never reports."""
    data = go_holds_and_reserves(locker, time, 30)
    seen: list[Effect] = []

    def go_renews(effect: Effect) -> None:  # Go's second update: state, no reservation
        seen.append(effect)
        if len(seen) == 1:
            _, meta = stored(locker)
            kept = {k: v for k, v in meta.items() if not k.startswith("reserved/")}
            locker.put_raw(NAME, data, kept)

    writes: list[Effect] = []
    start = time.mono
    done = drive(
        release_flow(intent(fair=True), locker.clock, None, None),
        locker,
        time,
        before_write=writes.append,
        on_watch=go_renews,
    )
    assert done.lost_reason is None
    assert len(seen) == 1 and time.mono == start  # woken by Go's update, not by a timer
    [leave] = writes
    assert isinstance(leave, Replace) and RESERVED_BY not in leave.base.meta
    state, meta = stored(locker)
    assert state.leases.keys() == {GO}
    assert [w.instance_id for w in read_queue(meta)] == [OTHER]


def test_leaving_the_line_writes_once_a_go_reservation_runs_out(
    locker: MemoryLocker, time: FakeTime
) -> None:
    go_holds_and_reserves(locker, time, 3)  # second precision: runs out 2 to 3 s from now
    start = time.mono
    done = drive(release_flow(intent(fair=True), locker.clock, None, None), locker, time)
    assert done.lost_reason is None
    assert 2 <= time.mono - start <= 4
    assert [w.instance_id for w in read_queue(stored(locker)[1])] == [OTHER]


def test_leaving_the_line_gives_up_on_a_stale_go_reservation(
    locker: MemoryLocker, time: FakeTime
) -> None:
    """A Go process that died between its two updates: our place is left to lapse
    (as a dead waiter's does) rather than hold up the caller for 30 s."""
    go_holds_and_reserves(locker, time, 30)
    before, start = locker.raw(NAME), time.mono
    with pytest.raises(LockTimeout, match="could not leave the line") as caught:
        drive(release_flow(intent(fair=True), locker.clock, None, None), locker, time)
    assert caught.value.holder == GO
    assert time.mono - start == pytest.approx(CLAIM_WINDOW)
    assert locker.raw(NAME) == before


def test_release_flow_without_record_reads_first(locker: MemoryLocker, time: FakeTime) -> None:
    take(locker, time, intent())
    stamped = stored(locker)[1]
    done = drive(release_flow(intent(), locker.clock, None, None), locker, time)
    assert done.lost_reason is None
    assert stored(locker)[1] == stamped  # no token: the fencing annotations are left alone


def test_a_mutex_with_our_lease_and_another_live_one_is_refused() -> None:
    """Only an outside writer makes such a state; neither side may act on it as held."""
    rec = record(lock(Lease(ME, at(30)), Lease(OTHER, at(30))))
    error = refused(acquire(rec), LockStateError)
    assert "several live leases" in str(error)
    lost = refused(decide_renew(intent(), rec, at(0), at(1), 7), LockLost)
    assert lost.holder == OTHER  # type: ignore[attr-defined]


# ------------------------------------------------------------ conflicts: refresh and pause


def drive_watching(
    flow: Flow, locker: MemoryLocker, time: FakeTime, before_write: Hook | None
) -> tuple[Any, list[Effect]]:
    """Like :func:`drive`, for a shell whose open watch answers a quick wait with
    the object's current version (no request); returns the effects seen too,
    and records in ``yielded_at`` the fake monotonic time each was yielded."""
    effects: list[Effect] = []
    yielded_at.clear()
    result: Any = None
    for _ in range(500):
        try:
            effect = flow.send(result)
        except StopIteration as stop:
            return stop.value, effects
        effects.append(effect)
        yielded_at.append(time.mono)
        if isinstance(effect, Watch) and effect.quick:
            if locker.version_of(NAME) == effect.version:
                assert effect.until is not None
                time.advance(max(0.0, effect.until - time.mono))  # nothing newer comes
                result = UNCHANGED
            else:
                result = locker.execute(Read(NAME))
                locker.requests["get"] -= 1  # the open watch had it: no request
            continue
        if isinstance(effect, Sleep):
            time.advance(max(0.0, effect.until - time.mono))
            result = None
            continue
        if isinstance(effect, Create | Replace) and before_write is not None:
            before_write(effect)
        result = locker.execute(effect)
    raise Runaway("flow still running after 500 effects")


yielded_at: list[float] = []


def bump_times(locker: MemoryLocker, times: int) -> Hook:
    hook = bump(locker)
    left = [times]

    def maybe(effect: Effect) -> None:
        if left[0] > 0:
            left[0] -= 1
            hook(effect)

    return maybe


def test_a_conflict_takes_the_newer_version_from_the_open_watch(
    locker: MemoryLocker, time: FakeTime
) -> None:
    locker.put_raw(NAME, encode_state(lock()))
    got, effects = drive_watching(
        acquire_flow(intent(), locker.clock, None), locker, time, bump_times(locker, 1)
    )
    assert isinstance(got, Acquired)
    # One read to begin with; after the conflict, the watch's version instead of a read.
    assert locker.requests["get"] == 1 + 1  # the second is the conflicting writer's
    quick = [e for e in effects if isinstance(e, Watch)]
    assert len(quick) == 1 and quick[0].quick and quick[0].holder is None


def test_a_conflict_reads_when_the_watch_shows_nothing_newer_in_time(
    locker: MemoryLocker, time: FakeTime
) -> None:
    locker.put_raw(NAME, encode_state(lock()))
    flow = acquire_flow(intent(), locker.clock, None)
    effects: list[Effect] = []
    hook = bump_times(locker, 1)
    result: Any = None
    got: Any = None
    while got is None:
        try:
            effect = flow.send(result)
        except StopIteration as stop:
            got = stop.value
            continue
        effects.append(effect)
        if isinstance(effect, Replace):
            hook(effect)
        if isinstance(effect, Watch):
            assert effect.quick and effect.open  # it may open the operation's watch
            result = UNCHANGED  # ... which shows nothing newer within REFRESH_WAIT
            continue
        result = locker.execute(effect)
    assert isinstance(got, Acquired)
    kinds = [type(e).__name__ + ("(quick)" if isinstance(e, Watch) else "") for e in effects]
    assert kinds == ["Read", "Replace", "Watch(quick)", "Read", "Replace"]
    assert locker.requests["watch"] == 0


def test_conflicts_in_a_row_pause_a_random_doubling_while(
    locker: MemoryLocker, time: FakeTime
) -> None:
    from lockheed._core import CONFLICT_BASE

    locker.put_raw(NAME, encode_state(lock()))
    got, effects = drive_watching(
        acquire_flow(intent(), locker.clock, None, rng=lambda: 1.0),
        locker,
        time,
        joiners(locker, 4),
    )
    assert isinstance(got, Acquired)
    pauses = [
        round(e.until - at, 6)
        for e, at in zip(effects, yielded_at, strict=True)
        if isinstance(e, Sleep)
    ]
    # A pause after each conflict with newcomers: 1, 2, 4, 8 times the base (rng 1.0: the most).
    assert pauses == [CONFLICT_BASE, 2 * CONFLICT_BASE, 4 * CONFLICT_BASE, 8 * CONFLICT_BASE]


def test_a_single_newcomer_is_raced_again_at_once(locker: MemoryLocker, time: FakeTime) -> None:
    """One newcomer beating our write is the usual race with a holder that joins
    again right after its release: no pause."""
    from lockheed._queue import Waiter, queue_meta

    locker.put_raw(NAME, encode_state(lock()))
    count = [0]

    def one_joins(effect: Effect) -> None:
        if count[0] >= 3:
            return
        count[0] += 1
        current = locker.execute(Read(NAME))
        assert isinstance(current, Record) and current.state is not None
        meta = queue_meta((*read_queue(current.meta), Waiter(f"one-{count[0]}", None)))
        assert locker.execute(Replace(NAME, current.version, current.state, meta, current))

    got, effects = drive_watching(
        acquire_flow(intent(), locker.clock, None), locker, time, one_joins
    )
    assert isinstance(got, Acquired)
    assert not any(isinstance(e, Sleep) for e in effects)


def test_conflicts_with_a_holders_writes_do_not_pause(locker: MemoryLocker, time: FakeTime) -> None:
    """A contender racing a greedy holder (who releases and takes the lock again)
    is not slowed down: only others joining the line makes it pause."""
    locker.put_raw(NAME, encode_state(lock()))
    got, effects = drive_watching(
        acquire_flow(intent(), locker.clock, None), locker, time, bump_times(locker, 4)
    )
    assert isinstance(got, Acquired)
    assert not any(isinstance(e, Sleep) for e in effects)


def joiners(locker: MemoryLocker, times: int) -> Hook:
    """Conflicting writers: two newcomers join the line each time (a crowd)."""
    from lockheed._queue import Waiter, queue_meta

    count = [0]

    def hook(effect: Effect) -> None:
        if count[0] >= times:
            return
        count[0] += 1
        current = locker.execute(Read(NAME))
        assert isinstance(current, Record) and current.state is not None
        line = (
            *read_queue(current.meta),
            Waiter(f"newcomer-{count[0]}a", None),
            Waiter(f"newcomer-{count[0]}b", None),
        )
        meta = queue_meta(line)
        assert locker.execute(Replace(NAME, current.version, current.state, meta, current))

    return hook


def test_a_conflict_pause_never_passes_the_deadline(locker: MemoryLocker, time: FakeTime) -> None:
    locker.put_raw(NAME, encode_state(lock()))
    deadline = time.mono + 0.001
    with pytest.raises(LockTimeout):
        drive(
            acquire_flow(intent(), locker.clock, deadline, rng=lambda: 1.0),
            locker,
            time,
            joiners(locker, 1000),
        )
    assert time.mono <= deadline


def test_a_fresh_cached_copy_dates_the_acquire_a_stale_one_does_not(
    locker: MemoryLocker, time: FakeTime
) -> None:
    locker.put_raw(NAME, encode_state(lock(Lease("holder", T0 + timedelta(seconds=60)))))
    cached = locker.execute(Read(NAME))
    bump(locker)(Read(NAME))  # the object moved on since the copy
    for age, since in ((0.5, int(cached.version)), (5.0, int(cached.version) + 1)):
        flow = acquire_flow(
            intent(fair=True), locker.clock, None, cached=cached, cached_at=time.mono - age
        )
        effect = flow.send(None)  # the join, at the cached version: it conflicts
        assert isinstance(effect, Replace)
        result = locker.execute(effect)
        assert result is CONFLICT
        effect = flow.send(result)
        while not isinstance(effect, Replace):
            effect = flow.send(locker.execute(effect))
        (entry,) = read_queue({k: v for k, v in effect.meta.items() if v is not None})
        assert entry.since == since, age
        flow.close()
