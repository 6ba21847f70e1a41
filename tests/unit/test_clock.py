"""The estimate of the API server's time, with injected clocks."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from lockheed._clock import ServerClock

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SERVER0 = 1_764_140_400.0  # 2025-11-26T07:00:00Z, the server's time at monotonic 100


def utc(epoch: float) -> datetime:
    return EPOCH + timedelta(seconds=epoch)


class FakeTime:
    """The server's true time and this host's clocks, moved only by ``advance``."""

    def __init__(self, wall_error: float = 0.0) -> None:
        self.mono = 100.0
        self.true = SERVER0
        self.wall_error = wall_error

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.true + self.wall_error

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.true += seconds

    def clock(self) -> ServerClock:
        return ServerClock(monotonic=self.monotonic, wall=self.wall)


def test_before_any_sample_the_wall_clock_is_used() -> None:
    t = FakeTime(wall_error=42.5)
    clock = t.clock()
    assert clock.bounds() == (utc(SERVER0 + 42.5), utc(SERVER0 + 42.5))
    t.advance(3)
    assert clock.bounds() == (utc(SERVER0 + 45.5), utc(SERVER0 + 45.5))


def test_a_sample_bounds_server_time_within_date_and_date_plus_resolution_and_rtt() -> None:
    t = FakeTime()
    clock = t.clock()
    # Sent at 100, answered at 100.5; the Date header says SERVER0 (whole seconds).
    t.advance(0.5)
    clock.observe(SERVER0, sent=100.0, received=100.5)
    assert clock.bounds() == (utc(SERVER0), utc(SERVER0 + 1 + 0.5))


def test_bounds_move_with_the_monotonic_clock() -> None:
    t = FakeTime()
    clock = t.clock()
    t.advance(0.5)
    clock.observe(SERVER0, sent=100.0, received=100.5)
    t.advance(60)
    assert clock.bounds() == (utc(SERVER0 + 60), utc(SERVER0 + 61.5))


def test_resolution_zero_pins_the_time() -> None:
    t = FakeTime()
    clock = t.clock()
    clock.observe(SERVER0, sent=100.0, received=100.0, resolution=0.0)
    assert clock.bounds() == (utc(SERVER0), utc(SERVER0))


def test_intersecting_samples_narrow_the_bounds() -> None:
    t = FakeTime()
    clock = t.clock()
    clock.observe(SERVER0, sent=99.0, received=100.0)  # offset in [SERVER0-100, SERVER0-98]
    t.advance(10)
    clock.observe(SERVER0 + 10, sent=109.75, received=110.0)  # [SERVER0-100, SERVER0-98.75]
    earliest, latest = clock.bounds()
    assert (earliest, latest) == (utc(SERVER0 + 10), utc(SERVER0 + 11.25))
    t.advance(10)
    clock.observe(SERVER0 + 19, sent=119.5, received=120.0)  # [SERVER0-101, SERVER0-99.5]
    assert clock.bounds() == (utc(SERVER0 + 20), utc(SERVER0 + 20.5))


def test_a_wider_sample_does_not_widen_the_bounds() -> None:
    t = FakeTime()
    clock = t.clock()
    clock.observe(SERVER0, sent=100.0, received=100.0, resolution=0.25)
    t.advance(5)
    clock.observe(SERVER0 + 3, sent=100.0, received=105.0)  # a slow request
    assert clock.bounds() == (utc(SERVER0 + 5), utc(SERVER0 + 5.25))


def test_inconsistent_samples_re_anchor() -> None:
    """A sample disjoint from the estimate means a clock jumped: trust the new one."""
    t = FakeTime()
    clock = t.clock()
    clock.observe(SERVER0, sent=100.0, received=100.0)
    t.advance(10)
    clock.observe(SERVER0 + 3600, sent=109.5, received=110.0)  # the server's clock was stepped
    assert clock.bounds() == (utc(SERVER0 + 3600), utc(SERVER0 + 3601.5))
    t.advance(1)
    clock.observe(SERVER0 + 3601, sent=111.0, received=111.0)  # later samples intersect again
    assert clock.bounds() == (utc(SERVER0 + 3601), utc(SERVER0 + 3602))


def test_old_samples_are_dropped_after_their_lifetime() -> None:
    t = FakeTime()
    clock = t.clock()
    clock.observe(SERVER0, sent=100.0, received=100.0, resolution=0.0)
    t.advance(301)
    clock.observe(SERVER0 + 301, sent=400.0, received=401.0)  # consistent, but wider
    assert clock.bounds() == (utc(SERVER0 + 301), utc(SERVER0 + 303))


def test_a_wrong_local_wall_clock_does_not_matter_once_sampled() -> None:
    ahead, behind = FakeTime(wall_error=600), FakeTime(wall_error=-600)
    clocks = [ahead.clock(), behind.clock()]
    assert clocks[0].bounds() != clocks[1].bounds()
    for clock in clocks:
        clock.observe(SERVER0, sent=99.5, received=100.0)
    assert clocks[0].bounds() == clocks[1].bounds() == (utc(SERVER0), utc(SERVER0 + 1.5))
    for t in (ahead, behind):
        t.advance(45)
    assert clocks[0].bounds() == clocks[1].bounds() == (utc(SERVER0 + 45), utc(SERVER0 + 46.5))


def test_monotonic_at() -> None:
    t = FakeTime()
    clock = t.clock()
    clock.observe(SERVER0, sent=99.5, received=100.0)
    assert clock.monotonic_at(utc(SERVER0 + 30)) == 130.0
    assert clock.monotonic_at(utc(SERVER0 + 0.25)) == 100.25
    assert clock.monotonic_at(utc(SERVER0)) == 100.0
    assert clock.monotonic_at(utc(SERVER0 - 30)) == 100.0  # already past: now
    t.advance(10)
    assert clock.monotonic_at(utc(SERVER0 + 30)) == 130.0


def test_monotonic_at_uses_the_earliest_bound() -> None:
    """By the returned time the server has surely reached the stamp, however slow it is."""
    t = FakeTime()
    clock = t.clock()
    clock.observe(SERVER0, sent=90.0, received=100.0)  # a 10 s round trip: wide bounds
    at = clock.monotonic_at(utc(SERVER0 + 5))
    assert at == 105.0
    t.advance(at - t.mono)
    assert clock.bounds()[0] >= utc(SERVER0 + 5)


def test_monotonic_at_before_any_sample_uses_the_wall_clock() -> None:
    t = FakeTime(wall_error=-20)
    clock = t.clock()
    assert clock.monotonic_at(utc(SERVER0 + 10)) == 130.0


def test_observe_http_date() -> None:
    t = FakeTime()
    clock = t.clock()
    clock.observe_http_date("Wed, 26 Nov 2025 07:00:00 GMT", sent=99.75, received=100.0)
    assert clock.bounds() == (utc(SERVER0), utc(SERVER0 + 1.25))


def test_a_repeated_date_header_is_a_sample_each_time_and_a_new_one_is_read() -> None:
    # The last header's time is remembered (a busy client gets the same stamp
    # on many answers); every answer still narrows the bounds, and a new
    # stamp is parsed, not taken for the remembered one.
    t = FakeTime()
    clock = t.clock()
    clock.observe_http_date("Wed, 26 Nov 2025 07:00:00 GMT", sent=99.5, received=100.0)
    assert clock.bounds() == (utc(SERVER0), utc(SERVER0 + 1.5))
    clock.observe_http_date("Wed, 26 Nov 2025 07:00:00 GMT", sent=99.75, received=100.0)
    assert clock.bounds() == (utc(SERVER0), utc(SERVER0 + 1.25))
    clock.observe_http_date("Wed, 26 Nov 2025 07:00:01 GMT", sent=100.0, received=100.0)
    assert clock.bounds() == (utc(SERVER0 + 1), utc(SERVER0 + 1.25))


def test_observe_http_date_ignores_missing_or_garbage_headers() -> None:
    t = FakeTime(wall_error=7)
    clock = t.clock()
    for header in (None, "", "yesterday", "Wed, 99 Nov 2025 07:00:00 GMT"):
        clock.observe_http_date(header, sent=99.0, received=100.0)
    assert clock.bounds() == (utc(SERVER0 + 7), utc(SERVER0 + 7))


# ---------------------------------------------------------------- property

# Quarter seconds keep every sum exact in floating point.
quarters = st.integers(0, 4 * 400).map(lambda n: n / 4)


@given(
    offset=st.integers(-(10**6), 10**6).map(lambda n: n / 4),
    requests=st.lists(st.tuples(quarters, quarters, st.floats(0, 1)), min_size=1, max_size=12),
)
def test_valid_samples_always_bound_the_true_time(
    offset: float, requests: list[tuple[float, float, float]]
) -> None:
    """Any sequence of honest samples (the Date is the whole second at some instant
    between send and receipt) keeps the true server time within the bounds."""
    mono = 1000.0
    clock = ServerClock(monotonic=lambda: mono, wall=lambda: 0.0)
    for pause, rtt, where in requests:
        sent = mono + pause
        received = sent + rtt
        stamped_at = sent + where * rtt
        clock.observe(math.floor(stamped_at + SERVER0 + offset), sent, received)
        mono = received
        earliest, latest = clock.bounds()
        true = utc(mono + SERVER0 + offset)
        assert earliest <= true <= latest
        assert latest - earliest <= timedelta(seconds=1 + rtt)
