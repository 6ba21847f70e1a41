"""The core's flows under backend faults: slow answers, transient failures and
writes whose outcome is unknown (pure: a Memory store and fake time)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from lockheed import LockBackendError, LockForbidden, LockTimeout, MemoryLocker
from lockheed._core import (
    BACKOFF_CAP,
    TOKEN_HOLDER_KEY,
    TOKEN_KEY,
    Acquired,
    Create,
    Effect,
    Flow,
    Intent,
    Read,
    Released,
    Replace,
    Sleep,
    Watch,
    acquire_flow,
    release_flow,
)
from lockheed._state import decode_state

UTC = timezone.utc
NAME = "build"
ME, OTHER = "me", "other"


class Clock:
    def __init__(self) -> None:
        self.mono = 100.0
        self.true = datetime(2026, 11, 26, 7, tzinfo=UTC).timestamp()

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.true += seconds


# A fault decides, for the n-th effect sent to the store, what happens to it:
# None (performed normally), "lost" (raises before reaching the store),
# "ambiguous" (performed, then its answer is lost), or a number of seconds the
# answer takes.
Fault = Callable[[int, Effect], "str | float | None"]


def transient(message: str = "connection reset") -> LockBackendError:
    return LockBackendError(message, lock=NAME, transient=True)


class Driver:
    def __init__(self) -> None:
        self.time = Clock()
        self.store = MemoryLocker(wall=lambda: self.time.true, monotonic=lambda: self.time.mono)
        self.effects: list[Effect] = []
        self.slept = 0.0

    def intent(self, who: str = ME, duration: float | None = 10) -> Intent:
        return Intent(NAME, who, None if duration is None else timedelta(seconds=duration))

    def run(self, flow: Flow, fault: Fault | None = None, limit: int = 500) -> Any:
        result: Any = None
        error: Exception | None = None
        n = 0
        for _ in range(limit):
            try:
                effect = flow.send(result) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            result, error = None, None
            if isinstance(effect, Sleep):
                assert effect.until > self.time.mono
                self.slept += effect.until - self.time.mono
                self.time.advance(effect.until - self.time.mono)
                continue
            self.effects.append(effect)
            what = fault(n, effect) if fault else None
            n += 1
            if what == "lost":
                error = transient()
                continue
            if isinstance(effect, Watch):
                current = self.store.execute(Read(NAME))
                if (current.version if current else None) == effect.version:
                    assert effect.until is not None
                    self.time.advance(max(0.0, effect.until - self.time.mono))
            result = self.store.execute(effect)
            if what == "ambiguous":
                result, error = None, transient("response lost")
            elif isinstance(what, float):
                self.time.advance(what)
        raise AssertionError("the flow did not finish")

    def take(self, who: str = ME, duration: float | None = 10) -> Acquired:
        got = self.run(acquire_flow(self.intent(who, duration), self.store.clock, None))
        assert isinstance(got, Acquired)
        return got

    def leases(self) -> set[str]:
        raw = self.store.raw(NAME)
        assert raw is not None and raw[0] is not None
        return set(decode_state(raw[0]).leases)


@pytest.fixture
def d() -> Driver:
    return Driver()


def writes(effects: list[Effect]) -> list[Effect]:
    return [e for e in effects if isinstance(e, Create | Replace)]


# ---------------------------------------------------------------- slow answers


def test_an_acquire_answered_after_its_loss_deadline_writes_the_lease_again(d: Driver) -> None:
    slow_once: Fault = lambda n, e: 12.0 if isinstance(e, Replace) and n < 3 else None  # noqa: E731
    got = d.run(acquire_flow(d.intent(), d.store.clock, None), slow_once)
    assert isinstance(got, Acquired)
    replaces = [e for e in d.effects if isinstance(e, Replace)]
    assert len(replaces) == 2  # the late one, then one answered in time
    assert d.time.mono < got.sent + 10 - 1  # returned within the lease's safe span
    assert d.leases() == {ME}


def test_a_late_answer_past_the_timeout_is_a_timeout(d: Driver) -> None:
    """The shell then removes the lease, as after any failed acquire that wrote."""
    d.store.put_raw(NAME, '{"name":"build","lockType":"mutex","leases":null}')
    slow: Fault = lambda n, e: 9.5 if isinstance(e, Replace) and n == 1 else None  # noqa: E731
    deadline = d.time.mono + 5
    with pytest.raises(LockTimeout, match="too slowly"):
        d.run(acquire_flow(d.intent(), d.store.clock, deadline), slow)


def test_an_answer_just_inside_the_safe_span_is_kept(d: Driver) -> None:
    d.store.put_raw(NAME, '{"name":"build","lockType":"mutex","leases":null}')
    slow: Fault = lambda n, e: 8.9 if isinstance(e, Replace) else None  # noqa: E731
    got = d.run(acquire_flow(d.intent(), d.store.clock, None), slow)
    assert isinstance(got, Acquired)
    assert len(writes(d.effects)) == 1  # margin is 1 s of a 10 s lease


# ------------------------------------------------------------ transient errors


@pytest.mark.parametrize("kind", [Read, Watch, Replace])
def test_an_acquire_rides_out_transient_failures_of_each_request(
    d: Driver, kind: type[Effect]
) -> None:
    holder = d.take(OTHER, duration=2)
    failed: list[int] = []

    def fault(n: int, e: Effect) -> str | None:
        if isinstance(e, kind) and len(failed) < 4:
            failed.append(n)
            return "lost"
        return None

    got = d.run(acquire_flow(d.intent(), d.store.clock, d.time.mono + 60), fault)
    assert isinstance(got, Acquired)
    assert len(failed) == 4
    assert got.token > holder.token
    assert d.leases() == {ME}
    assert 0 < d.slept < 4 * BACKOFF_CAP


def test_a_transient_failure_at_the_timeout_is_a_lock_timeout(d: Driver) -> None:
    always: Fault = lambda n, e: "lost"  # noqa: E731
    with pytest.raises(LockTimeout, match="could not be reached") as caught:
        d.run(acquire_flow(d.intent(), d.store.clock, d.time.mono + 3), always)
    assert isinstance(caught.value.__cause__, LockBackendError)
    assert d.slept == pytest.approx(3)  # it kept trying until the deadline, no longer


def test_a_non_blocking_acquire_reports_the_backend_error_itself(d: Driver) -> None:
    always: Fault = lambda n, e: "lost"  # noqa: E731
    with pytest.raises(LockBackendError) as caught:
        d.run(acquire_flow(d.intent(), d.store.clock, d.time.mono), always)
    assert not isinstance(caught.value, LockTimeout)
    assert d.slept == 0


def test_a_final_error_ends_the_wait_at_once(d: Driver) -> None:
    flow = acquire_flow(d.intent(), d.store.clock, d.time.mono + 60)
    assert isinstance(next(flow), Read)
    denied = LockForbidden("no", lock=NAME, verb="get")
    with pytest.raises(LockForbidden):
        flow.throw(denied)
    flow = acquire_flow(d.intent(), d.store.clock, d.time.mono + 60)
    next(flow)
    with pytest.raises(LockBackendError, match="HTTP 404"):
        flow.throw(LockBackendError("HTTP 404 namespace", lock=NAME, transient=False))


def test_backoff_honours_retry_after(d: Driver) -> None:
    flow = acquire_flow(d.intent(), d.store.clock, d.time.mono + 60)
    next(flow)
    sleep = flow.throw(LockBackendError("429", lock=NAME, transient=True, retry_after=7.0))
    assert isinstance(sleep, Sleep)
    assert sleep.until == pytest.approx(d.time.mono + 7.0)


def test_backoff_grows_with_jitter_up_to_its_cap(d: Driver) -> None:
    def delays(draw: float) -> list[float]:
        flow = acquire_flow(d.intent(), d.store.clock, None, rng=lambda: draw)
        assert isinstance(next(flow), Read)
        out = []
        for _ in range(12):
            sleep = flow.throw(transient())
            assert isinstance(sleep, Sleep)
            out.append(sleep.until - d.time.mono)
            d.time.advance(sleep.until - d.time.mono)
            assert isinstance(flow.send(None), Read)  # slept enough: try again
        return out

    low, high = delays(0.0), delays(1.0)
    assert low[0] < low[1] < low[2]
    assert all(lo * 2 == pytest.approx(hi) for lo, hi in zip(low, high, strict=True))
    assert max(high) == pytest.approx(BACKOFF_CAP)


# ------------------------------------------------------- writes of unknown outcome


def test_an_ambiguous_acquire_that_landed_is_recognised_by_identity(d: Driver) -> None:
    d.store.put_raw(NAME, '{"name":"build","lockType":"mutex","leases":null}')
    first: Fault = lambda n, e: "ambiguous" if n == 1 else None  # noqa: E731
    got = d.run(acquire_flow(d.intent(), d.store.clock, d.time.mono + 30), first)
    assert isinstance(got, Acquired)
    assert d.leases() == {ME}
    raw = d.store.raw(NAME)
    assert raw is not None
    assert raw[1][TOKEN_KEY] == str(got.token) and raw[1][TOKEN_HOLDER_KEY] == ME


def test_an_ambiguous_acquire_that_did_not_land_waits_for_the_holder(d: Driver) -> None:
    d.store.put_raw(NAME, '{"name":"build","lockType":"mutex","leases":null}')
    calls: list[Effect] = []

    def sneak_in(n: int, e: Effect) -> str | None:
        calls.append(e)
        if n == 1:  # our write is lost; another instance takes the lock meanwhile
            d.take(OTHER, duration=None)
            return "lost"
        return None

    with pytest.raises(LockTimeout) as caught:
        d.run(acquire_flow(d.intent(), d.store.clock, d.time.mono + 5), sneak_in)
    assert caught.value.holder == OTHER
    assert d.leases() == {OTHER}


def test_an_ambiguous_release_that_landed_counts_as_released(d: Driver) -> None:
    got = d.take()
    first_write: Fault = lambda n, e: "ambiguous" if isinstance(e, Replace) else None  # noqa: E731
    done = d.run(release_flow(d.intent(), d.store.clock, got.record, got.token), first_write)
    assert isinstance(done, Released)
    assert done.lost_reason is None
    assert d.leases() == set()


def test_a_release_rides_out_a_blip(d: Driver) -> None:
    got = d.take()
    blip: Fault = lambda n, e: "lost" if n < 3 else None  # noqa: E731
    done = d.run(release_flow(d.intent(), d.store.clock, got.record, got.token), blip)
    assert isinstance(done, Released) and done.lost_reason is None
    assert d.leases() == set()


def test_a_release_gives_up_once_the_lease_would_have_expired(d: Driver) -> None:
    got = d.take()
    always: Fault = lambda n, e: "lost"  # noqa: E731
    with pytest.raises(LockBackendError):
        d.run(release_flow(d.intent(), d.store.clock, got.record, got.token), always)
    assert d.slept == pytest.approx(10)


def test_a_create_that_lost_its_answer_is_taken_at_its_version(d: Driver) -> None:
    lost_create: Fault = lambda n, e: "ambiguous" if isinstance(e, Create) else None  # noqa: E731
    got = d.run(acquire_flow(d.intent(), d.store.clock, None), lost_create)
    assert isinstance(got, Acquired)
    assert [type(e) for e in writes(d.effects)] == [Create, Replace]
