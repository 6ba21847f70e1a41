"""client-go's rule on a Lease by other writers: the holder's lease runs out
``leaseDurationSeconds`` after this process first saw the version, on its
monotonic clock, beside the server-time rule; judged at each decision, so a
server-clock estimate that narrows after the sighting never ends it early."""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from lockheed._clock import ServerClock
from lockheed._core import (
    UNCHANGED,
    Intent,
    Read,
    Replace,
    Wait,
    Watch,
    Write,
    acquire_flow,
    decide_acquire,
    decide_renew,
    sighted,
)
from lockheed._errors import LockLost
from lockheed._leasecodec import FOREVER_SECONDS, Sightings, decode_lease, updated_lease
from lockheed._state import NEVER, Lease, LockState, Record

UTC = timezone.utc
T0 = datetime(2026, 11, 26, 7, 0, 30, tzinfo=UTC)
SECOND = timedelta(seconds=1)
ME = Intent("x", "me", duration=timedelta(seconds=10), fair=False)


class Mono:
    """An injected monotonic clock."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def wide_clock(mono: Mono) -> ServerClock:
    """A server clock 1.1 s wide: the server said T0 to a request sent at 999.9
    and answered at 1000.0 (earliest T0, latest T0 + 1.1 s at monotonic 1000)."""
    clock = ServerClock(monotonic=mono, wall=lambda: 0.0)
    clock.observe(T0.timestamp(), sent=999.9, received=1000.0)
    return clock


def lease_obj(version: str = "42", stamp: datetime = T0, seconds: int = 3) -> dict[str, Any]:
    """A Lease as the API server returns it after client-go renewed it (stamp ``stamp``)."""
    renew = (stamp + SECOND / 2).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": "lockheed-x",
            "resourceVersion": version,
            "managedFields": [
                {
                    "manager": "go",
                    "operation": "Update",
                    "time": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            ],
        },
        "spec": {
            "holderIdentity": "go-1",
            "leaseDurationSeconds": seconds,
            "acquireTime": renew,
            "renewTime": renew,
            "leaseTransitions": 2,
        },
    }


def seen(clock: ServerClock, obj: dict[str, Any]) -> Record:
    """``obj`` decoded as the Lease locker does, first seen now."""
    return decode_lease("x", obj, clock.bounds()[1], clock.monotonic())


def decide(clock: ServerClock, record: Record) -> object:
    earliest, latest = clock.bounds()
    return decide_acquire(ME, sighted(record, earliest, clock.monotonic()), earliest, latest)


def test_the_sighting_deadline_travels_with_the_decoded_lease() -> None:
    record = decode_lease("x", lease_obj(seconds=3), T0 + SECOND, 1000.0)
    assert record.state is not None
    (lease,) = record.state.leases.values()
    assert lease.sighted_until == 1003.0
    assert lease.expires == T0 + 4 * SECOND  # the server-time rule, unchanged
    forever = decode_lease("x", lease_obj(seconds=FOREVER_SECONDS), T0, 1000.0)
    assert forever.state is not None and forever.state.leases["go-1"].sighted_until is None
    unsighted = decode_lease("x", lease_obj(), T0 + SECOND)
    assert unsighted.state is not None and unsighted.state.leases["go-1"].sighted_until is None
    assert sighted(unsighted, T0, 5000.0) is unsighted  # no sighting: only the server rule


def test_a_foreign_lease_runs_out_at_its_sighting_though_the_server_clock_is_a_second_wide() -> (
    None
):
    mono = Mono()
    clock = wide_clock(mono)
    record = seen(clock, lease_obj())  # sighted at 1000.0: runs out at 1003.0
    mono.now = 1002.999
    assert isinstance(decide(clock, record), Wait)
    mono.now = 1003.0
    earliest, latest = clock.bounds()
    assert earliest == T0 + 3 * SECOND  # the server rule alone (W + 1 s + 3 s) still waits
    assert isinstance(decide_acquire(ME, record, earliest, latest), Wait)
    taken = decide(clock, record)
    assert isinstance(taken, Write) and set(taken.state.leases) == {"me"}


def test_a_server_clock_narrowed_after_the_sighting_never_ends_the_lease_early() -> None:
    mono = Mono()
    clock = wide_clock(mono)
    record = seen(clock, lease_obj())
    naive = clock.bounds()[0] + 3 * SECOND  # the sighting as a server time, once
    # At 1002.0 the server says T0 + 3 s to a request sent at 1001.95: the
    # earliest bound rises by a whole second (consistent with the first sample).
    mono.now = 1002.0
    clock.observe((T0 + 3 * SECOND).timestamp(), sent=1001.95, received=1002.0)
    earliest, _ = clock.bounds()
    assert earliest >= naive  # a decode-time conversion would depose go-1 a second early
    wait = decide(clock, record)
    assert isinstance(wait, Wait) and wait.holder == "go-1"
    assert wait.until is not None
    assert clock.monotonic_at(wait.until) == pytest.approx(1003.0, abs=1e-5)
    mono.now = 1003.0
    assert isinstance(decide(clock, record), Write)


def test_a_renewal_seen_later_moves_the_sighting_deadline() -> None:
    mono = Mono()
    clock = wide_clock(mono)
    first = seen(clock, lease_obj("42"))
    mono.now = 1002.0
    renewed = seen(clock, lease_obj("43", stamp=T0 + 2 * SECOND))  # runs out at 1005.0
    mono.now = 1003.5
    assert isinstance(decide(clock, first), Write)  # the old version has run out
    assert isinstance(decide(clock, renewed), Wait)
    mono.now = 1004.999
    assert isinstance(decide(clock, renewed), Wait)
    mono.now = 1005.0
    assert isinstance(decide(clock, renewed), Write)


def drive(flow: Generator[Any, Any, Any], result: Any) -> Any:
    return flow.send(result)


def test_the_wait_wakes_at_the_earlier_expiry_and_then_takes_the_lock() -> None:
    mono = Mono()
    clock = wide_clock(mono)
    record = seen(clock, lease_obj())
    flow = acquire_flow(ME, clock, deadline=None)
    assert isinstance(next(flow), Read)
    watch = drive(flow, record)
    assert isinstance(watch, Watch) and watch.holder == "go-1"
    assert watch.until == pytest.approx(1003.001, abs=1e-5)  # not W + 1 s + 3 s (1004)
    assert watch.expires == T0 + 4 * SECOND  # the holder's end as the object says it
    mono.now = 1003.001
    write = drive(flow, UNCHANGED)
    assert isinstance(write, Replace) and set(write.state.leases) == {"me"}


def test_a_waiter_joining_the_line_writes_the_holders_record_as_it_was_read() -> None:
    mono = Mono()
    clock = wide_clock(mono)
    obj = lease_obj()
    record = seen(clock, obj)
    mono.now = 1002.5  # the sighting rule leaves go-1 less than the server rule does
    flow = acquire_flow(Intent("x", "me", duration=timedelta(seconds=10)), clock, deadline=None)
    next(flow)
    join = drive(flow, record)
    assert isinstance(join, Replace) and "lockheed/queue" in join.meta
    assert record.state is not None
    assert join.state.leases["go-1"] is record.state.leases["go-1"]  # not as judged
    assert updated_lease("lockheed-x", join, clock.bounds()[1])["spec"] == obj["spec"]


def test_our_own_lease_past_its_sighting_deadline_is_lost_on_renewal() -> None:
    record = Record(
        "x", "7", LockState("x").with_leases([Lease("me", T0 + 30 * SECOND, sighted_until=1010.0)])
    )
    judged = sighted(record, T0, 1010.0)
    decision = decide_renew(ME, judged, T0, T0 + SECOND, 7)
    assert isinstance(getattr(decision, "error", None), LockLost)
    assert isinstance(decide_renew(ME, sighted(record, T0, 1009.9), T0, T0 + SECOND, 7), Write)


def test_a_never_expiring_lease_is_not_judged_by_sight() -> None:
    record = Record("x", "7", LockState("x").with_leases([Lease("go-1", NEVER)]))
    assert sighted(record, T0, 10**9) is record


# ---------------------------------------------------------------- first sightings


def test_a_version_seen_again_keeps_its_first_sighting() -> None:
    sightings = Sightings()
    assert sightings.first("x", "5", T0, 1.0) == (T0, 1.0)
    assert sightings.first("x", "5", T0 + SECOND, 2.0) == (T0, 1.0)  # a GET after the watch
    assert sightings.first("x", "6", T0 + SECOND, 3.0) == (T0 + SECOND, 3.0)
    assert sightings.first("x", "5", T0 + 2 * SECOND, 4.0) == (T0, 1.0)  # an older answer late
    assert sightings.first("x", "6", T0 + 3 * SECOND, 5.0) == (T0 + SECOND, 3.0)
    assert sightings.first("y", "6", T0 + 3 * SECOND, 5.0) == (T0 + 3 * SECOND, 5.0)


def test_a_forgotten_version_is_sighted_anew_later_never_earlier() -> None:
    sightings = Sightings(limit=2, per_lock=2)
    sightings.first("x", "1", T0, 1.0)
    sightings.first("x", "2", T0, 2.0)
    sightings.first("x", "3", T0, 3.0)  # "1" forgotten
    assert sightings.first("x", "1", T0, 4.0) == (T0, 4.0)
    assert sightings.first("x", "3", T0, 5.0) == (T0, 3.0)
    sightings.first("y", "1", T0, 6.0)
    sightings.first("z", "1", T0, 7.0)  # past the limit of locks: all forgotten
    assert sightings.first("x", "3", T0, 8.0) == (T0, 8.0)
