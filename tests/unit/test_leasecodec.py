"""The Lease form of a lock, and the rule by which a Lease holder's expiry is judged."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lockheed import LockStateError
from lockheed._core import Intent, Refuse, Replace, Wait, Write, decide_acquire
from lockheed._leasecodec import (
    FOREVER_SECONDS,
    STALE_MARGIN,
    Sightings,
    decode_lease,
    format_micro_time,
    holder_expiry,
    lease_seconds,
    line_write,
    new_lease,
    peer_view,
    record_key,
    server_stamp,
    updated_lease,
)
from lockheed._state import NEVER, Lease, LockState, Record

UTC = timezone.utc
T0 = datetime(2026, 11, 26, 7, 0, 30, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def stamped(when: datetime, manager: str = "kube-controller-manager") -> dict[str, Any]:
    return {"manager": manager, "operation": "Update", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}


def client_go_lease(
    holder: str | None = "go-1",
    seconds: int | None = 15,
    renew: str | None = "2026-11-26T07:00:29.123456Z",
    stamps: list[datetime] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Lease as the API server returns it after client-go's leader election wrote it."""
    spec: dict[str, Any] = {"leaseTransitions": 3, **extra}
    if holder is not None:
        spec["holderIdentity"] = holder
    if seconds is not None:
        spec["leaseDurationSeconds"] = seconds
    if renew is not None:
        spec["renewTime"] = renew
        spec["acquireTime"] = renew
    metadata: dict[str, Any] = {"name": "lockheed-x", "resourceVersion": "42"}
    if stamps:
        metadata["managedFields"] = [stamped(s, f"m{i}") for i, s in enumerate(stamps)]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
            "spec": spec}  # fmt: skip


def holder_of(record: Record) -> Lease:
    assert record.state is not None, record.error
    (lease,) = record.state.leases.values()
    return lease


# ---------------------------------------------------------------- timestamps


def test_micro_time_has_exactly_six_digits_in_utc() -> None:
    assert format_micro_time(T0) == "2026-11-26T07:00:30.000000Z"
    offset = datetime(2026, 11, 26, 9, 0, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    assert format_micro_time(offset) == "2026-11-26T07:00:30.000005Z"
    with pytest.raises(ValueError, match="timezone"):
        format_micro_time(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "renew",
    [
        "2026-11-26T07:00:29Z",
        "2026-11-26T07:00:29.1Z",
        "2026-11-26T07:00:29.123456789Z",
        "2026-11-26T09:00:29.5+02:00",
        "2026-11-26T02:00:29-05:00",
    ],
)
def test_any_rfc3339_renew_time_is_read(renew: str) -> None:
    """The server normalises MicroTime; a Lease obtained otherwise may carry any form."""
    record = decode_lease("x", client_go_lease(renew=renew), observed=T0)
    assert holder_of(record).instance_id == "go-1"


@given(st.integers(0, 10**7), st.integers(-(10**12), 10**12))
def test_lease_seconds_round_up_and_never_shorten(seconds: int, micros: int) -> None:
    now = T0 + timedelta(microseconds=micros)
    duration = timedelta(seconds=seconds, microseconds=abs(micros) % 1_000_000)
    written = lease_seconds(now + duration, now)
    assert 1 <= written < FOREVER_SECONDS
    assert timedelta(seconds=written) >= duration
    assert timedelta(seconds=written) < max(duration, SECOND) + SECOND


def test_never_is_the_largest_duration_and_reads_back_as_never() -> None:
    assert lease_seconds(NEVER, T0) == FOREVER_SECONDS
    state = LockState("x").with_leases([Lease("me", NEVER)])
    lease = new_lease("lockheed-x", "ns", state, {}, T0)
    assert lease["spec"]["leaseDurationSeconds"] == FOREVER_SECONDS == 2**31 - 1
    assert holder_of(decode_lease("x", lease, observed=T0)).expires == NEVER


# ---------------------------------------------------------------- expiry rule


def test_server_stamp_is_the_newest_managed_fields_time() -> None:
    meta = client_go_lease(stamps=[T0, T0 + 3 * SECOND, T0 + SECOND])["metadata"]
    meta["managedFields"].append({"manager": "no-time"})
    meta["managedFields"].append({"manager": "bad", "time": "yesterday"})
    assert server_stamp(meta) == T0 + 3 * SECOND
    assert server_stamp({}) is None
    assert server_stamp({"managedFields": None}) is None


def owning(when: datetime, manager: str, *fields: str) -> dict[str, Any]:
    """A managedFields entry of ``manager`` at ``when`` owning ``fields`` ("spec.x")."""
    owned: dict[str, Any] = {}
    for path in fields:
        top, key = path.split(".")
        owned.setdefault(f"f:{top}", {})[f"f:{key}"] = {}
    return {**stamped(when, manager), "fieldsType": "FieldsV1", "fieldsV1": owned}


def test_the_stamp_is_the_last_change_of_the_holders_record() -> None:
    """Entries that own no field of spec (a waiter's join under its own field
    manager, a label added with kubectl) are later, and do not count."""
    meta: dict[str, Any] = {
        "managedFields": [
            owning(T0 + SECOND, "lockheed", "spec.renewTime", "spec.holderIdentity"),
            owning(T0 + 5 * SECOND, "lockheed-line", "metadata.annotations"),
            owning(T0 + 7 * SECOND, "kubectl-label", "metadata.labels"),
        ]
    }
    assert server_stamp(meta) == T0 + SECOND
    # Another writer that changed the record owns what it changed: the newest owner counts.
    meta["managedFields"].append(
        owning(T0 + 3 * SECOND, "kube-controller-manager", "spec.renewTime")
    )
    assert server_stamp(meta) == T0 + 3 * SECOND
    # An entry whose fields are not given may own the record: it counts.
    meta["managedFields"].append(stamped(T0 + 4 * SECOND, "unknown"))
    assert server_stamp(meta) == T0 + 4 * SECOND
    # Nobody owns spec (a record written while the fields were stripped): the newest stamp.
    assert server_stamp({"managedFields": meta["managedFields"][1:3]}) == T0 + 7 * SECOND


def test_a_join_extends_no_holders_lease() -> None:
    """A waiter's join keeps the spec, so it is sent under the line's field
    manager, and its new version is no new sighting of the holder's record."""
    obj = client_go_lease(stamps=[T0])
    obj["metadata"]["resourceVersion"] = "42"
    base = decode_lease("x", obj, observed=T0)
    assert base.state is not None
    joined = base.state  # the holder's lease as read; the line is in the meta
    join = Replace("x", "42", joined, {"lockheed/queue": '[{"id":"w","d":30.0,"v":42}]'}, base)
    body = updated_lease("lockheed-x", join, T0 + SECOND)
    assert body["spec"] == obj["spec"] and line_write(join, body)
    answered = {**body, "metadata": {**body["metadata"], "resourceVersion": "43"}}
    assert record_key(answered) == record_key(obj)

    seen = Sightings()
    assert seen.first("x", record_key(obj), T0, 100.0) == (T0, 100.0)
    assert seen.first("x", record_key(answered), T0 + SECOND, 101.0) == (T0, 100.0)

    # A renewal, a change of holder and a release change the record: not a line write.
    for state in (
        LockState("x").with_leases([Lease("go-1", T0 + 20 * SECOND)]),
        LockState("x").with_leases([Lease("me", T0 + 20 * SECOND)]),
        LockState("x"),
    ):
        write = Replace("x", "43", state, {}, decode_lease("x", answered, observed=T0))
        changed = updated_lease("lockheed-x", write, T0 + 2 * SECOND)
        assert not line_write(write, changed)
        assert record_key(changed) != record_key(obj)
        assert seen.first("x", record_key(changed), T0 + 2 * SECOND, 102.0)[1] == 102.0


renew_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(
    renew=renew_times,
    seconds=st.integers(1, 10**6),
    stamp_age=st.integers(0, 10**6),
    seen_after=st.integers(0, 10**6),
)
def test_a_stamped_holder_expires_by_the_server_stamp_alone(
    renew: datetime, seconds: int, stamp_age: int, seen_after: int
) -> None:
    """With a server stamp W, expiry is W + 1 s + leaseDurationSeconds whatever the
    writer's clock put in renewTime, and whenever we first saw it."""
    stamp = T0 - timedelta(seconds=stamp_age)
    observed = stamp + timedelta(microseconds=seen_after)
    expires = holder_expiry(seconds, stamp, observed, renew)
    assert expires == stamp + SECOND + timedelta(seconds=seconds)


@given(
    written=st.integers(0, 10**6),  # true server time of the holder's write, ms before T0
    skew=st.integers(-(10**7), 10**7),  # writer's clock minus the server's, ms
    seconds=st.integers(1, 10**5),
    seen_after=st.integers(0, 10**6),  # ms between the write and our first sight of it
)
def test_unstamped_holder_is_never_deposed_early_within_the_margin(
    written: int, skew: int, seconds: int, seen_after: int
) -> None:
    """Without a stamp, a holder whose clock is at most STALE_MARGIN behind the
    server's (or any amount ahead) keeps its lease for its whole duration after
    its write, and nobody waits longer than client-go would after first seeing it."""
    true_write = T0 - timedelta(milliseconds=written)
    renew = true_write + timedelta(milliseconds=skew)
    observed = true_write + timedelta(milliseconds=seen_after)
    duration = timedelta(seconds=seconds)
    expires = holder_expiry(seconds, None, observed, renew)
    assert expires <= observed + duration  # never longer than client-go's rule
    if renew >= true_write - STALE_MARGIN:
        assert expires >= true_write + duration


def test_unstamped_plainly_stale_record_expired_long_ago() -> None:
    hour_ago = T0 - timedelta(hours=1)
    expires = holder_expiry(15, None, T0, hour_ago)
    assert expires == hour_ago + timedelta(seconds=15) + STALE_MARGIN < T0


def test_unstamped_record_with_a_clock_ahead_is_judged_by_first_sight() -> None:
    expires = holder_expiry(15, None, T0, T0 + timedelta(hours=1))
    assert expires == T0 + timedelta(seconds=15)


def test_a_stamp_later_than_our_first_sight_is_not_a_server_stamp() -> None:
    """No server stamped a write after we saw it: a forged or foreign-clock stamp
    falls back to client-go's rule instead of making us wait for it."""
    forged = T0 + timedelta(days=365)
    assert holder_expiry(15, forged, T0, None) == T0 + timedelta(seconds=15)


def test_decoded_expiry_follows_the_rule() -> None:
    obj = client_go_lease(seconds=15, stamps=[T0 - 5 * SECOND])
    assert holder_of(decode_lease("x", obj, observed=T0)).expires == T0 + 11 * SECOND
    bare = client_go_lease(seconds=15, renew=None)
    assert holder_of(decode_lease("x", bare, observed=T0)).expires == T0 + 15 * SECOND


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"holderIdentity": None},
        {"holderIdentity": ""},
        # client-go's ReleaseOnCancel
        {
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "acquireTime": "2026-11-26T07:00:29.000000Z",
            "renewTime": "2026-11-26T07:00:29.000000Z",
            "leaseTransitions": 4,
        },
    ],
)
def test_a_lease_without_holder_is_free(spec: dict[str, Any]) -> None:
    obj = {"metadata": {"resourceVersion": "7"}, "spec": spec}
    record = decode_lease("x", obj, observed=T0)
    assert record.state == LockState("x")
    assert record.version == "7"


def test_lockheed_fields_live_in_annotations() -> None:
    obj = client_go_lease(stamps=[T0])
    obj["metadata"]["annotations"] = {
        "lockheed/name": "x",
        "lockheed/lock-type": "mutex",
        "lockheed/tags": '["a","b"]',
        "lockheed/fencing-token": "41",
        "reserved/by": "go",
        "reserved/expires": "2999-01-01T00:00:00Z",
    }
    record = decode_lease("x", obj, observed=T0)
    assert record.state is not None and record.state.tags == ("a", "b")
    assert record.meta["lockheed/fencing-token"] == "41"
    assert "reserved/by" not in record.meta  # no Go reservations on a Lease


@pytest.mark.parametrize(
    ("spec", "annotations", "error"),
    [
        ({"holderIdentity": "go-1"}, {}, "leaseDurationSeconds"),
        ({"holderIdentity": "go-1", "leaseDurationSeconds": 0}, {}, "leaseDurationSeconds"),
        ({"holderIdentity": "go-1", "leaseDurationSeconds": True}, {}, "leaseDurationSeconds"),
        ({"holderIdentity": "go-1", "leaseDurationSeconds": "15"}, {}, "leaseDurationSeconds"),
        ({"holderIdentity": 7, "leaseDurationSeconds": 15}, {}, "holderIdentity"),
        (
            {"holderIdentity": "go-1", "leaseDurationSeconds": 15, "renewTime": "soon"},
            {},
            "timestamp",
        ),
        ({}, {"lockheed/tags": "a,b"}, "tags"),
        ({}, {"lockheed/tags": '[1, "b"]'}, "tags"),
        ("not a spec", {}, "spec"),
    ],
)
def test_an_uninterpretable_lease_is_malformed(
    spec: Any, annotations: dict[str, str], error: str
) -> None:
    obj = {"metadata": {"resourceVersion": "7", "annotations": annotations}, "spec": spec}
    record = decode_lease("x", obj, observed=T0)
    assert record.state is None and record.error is not None and error in record.error
    # ... and the core never overwrites it unless forced
    decision = decide_acquire(Intent("x", "me", timedelta(seconds=30)), record, T0, T0)
    assert isinstance(decision, Refuse) and isinstance(decision.error, LockStateError)


def test_another_lock_type_is_refused() -> None:
    obj = client_go_lease(holder=None)
    obj["metadata"]["annotations"] = {"lockheed/lock-type": "shared"}
    record = decode_lease("x", obj, observed=T0)
    decision = decide_acquire(Intent("x", "me", timedelta(seconds=30)), record, T0, T0)
    assert isinstance(decision, Refuse) and isinstance(decision.error, LockStateError)
    assert "shared" in str(decision.error)


def test_a_live_client_go_holder_makes_the_core_wait() -> None:
    obj = client_go_lease(seconds=15, stamps=[T0])
    record = decode_lease("x", obj, observed=T0 + SECOND)
    racing = Intent("x", "me", timedelta(seconds=30), fair=False)
    decision = decide_acquire(racing, record, T0, T0 + SECOND)
    assert isinstance(decision, Wait)
    assert (decision.holder, decision.until) == ("go-1", T0 + 16 * SECOND)
    later = T0 + 16 * SECOND + timedelta(microseconds=1)
    assert isinstance(decide_acquire(Intent("x", "me"), record, later, later), Write)


# ---------------------------------------------------------------- encoding


def test_new_lease_is_what_client_go_would_create() -> None:
    state = LockState("x", tags=("t",)).with_leases([Lease("me", T0 + timedelta(seconds=30))])
    lease = new_lease("lockheed-x", "ns", state, {"lockheed/fencing-token": None}, T0)
    assert lease["metadata"] == {
        "name": "lockheed-x",
        "namespace": "ns",
        "labels": {"lockheed/lock": "", "lockheed/w.me": "1"},  # the holder's view label
        "annotations": {
            "lockheed/name": "x",
            "lockheed/lock-type": "mutex",
            "lockheed/tags": '["t"]',
        },
    }
    assert lease["spec"] == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 30,
        "acquireTime": "2026-11-26T07:00:30.000000Z",
        "renewTime": "2026-11-26T07:00:30.000000Z",
        "leaseTransitions": 0,
    }


def replace_of(obj: dict[str, Any], state: LockState, meta: dict[str, str | None]) -> Replace:
    base = decode_lease("x", obj, observed=T0)
    return Replace("x", base.version, state, meta, base)


def test_update_keeps_what_others_wrote_and_counts_transitions() -> None:
    obj = client_go_lease(stamps=[T0], preferredHolder="go-2", strategy="OldestEmulationVersion")
    obj["metadata"]["labels"] = {"app": "ctl"}
    obj["metadata"]["annotations"] = {"note": "kept", "lockheed/tags": '["old"]'}
    taken = LockState("x").with_leases([Lease("me", T0 + timedelta(seconds=10))])
    body = updated_lease("lockheed-x", replace_of(obj, taken, {"lockheed/fencing-token": "43"}), T0)
    meta = body["metadata"]
    assert meta["resourceVersion"] == "42" and "managedFields" not in meta
    assert meta["labels"] == {"app": "ctl", "lockheed/lock": "", "lockheed/w.me": "1"}
    assert meta["annotations"] == {
        "note": "kept",
        "lockheed/name": "x",
        "lockheed/lock-type": "mutex",
        "lockheed/fencing-token": "43",
    }
    spec = body["spec"]
    assert spec["holderIdentity"] == "me" and spec["leaseDurationSeconds"] == 10
    assert spec["leaseTransitions"] == 4  # a change of holder, as client-go counts it
    assert spec["acquireTime"] == spec["renewTime"] == "2026-11-26T07:00:30.000000Z"
    assert (spec["preferredHolder"], spec["strategy"]) == ("go-2", "OldestEmulationVersion")
    assert obj["spec"]["holderIdentity"] == "go-1"  # the object read is not modified

    # Our renewal: same holder, same acquireTime and transitions; renewTime never goes back.
    ours = {**body, "metadata": {**meta, "resourceVersion": "43"}}
    later = T0 + timedelta(seconds=3)
    renewed = LockState("x").with_leases([Lease("me", later + timedelta(seconds=10))])
    spec2 = updated_lease("lockheed-x", replace_of(ours, renewed, {}), later)["spec"]
    assert spec2["leaseTransitions"] == 4 and spec2["acquireTime"] == spec["acquireTime"]
    assert spec2["renewTime"] == "2026-11-26T07:00:33.000000Z"
    back = T0 - timedelta(milliseconds=5)
    spec3 = updated_lease("lockheed-x", replace_of(ours, renewed, {}), back)["spec"]
    # Nor does it stand still: the API server takes a spec written as stored
    # for no change (no new version, no stamp): nobody would see a renewal.
    assert spec3["renewTime"] == "2026-11-26T07:00:30.000001Z"
    assert spec3 != spec


@given(st.lists(st.integers(-1500, 1500).filter(bool), min_size=1, max_size=8))
@example([1, -1])  # back where the first renewal began
def test_every_renewal_of_ours_changes_the_spec(steps: list[int]) -> None:
    """However the server-time estimate moves between renewals (milliseconds),
    each renewal writes a later renewTime, so it is a change. (A
    write that keeps the holder's lease exactly as read is a waiter's, which
    leaves the holder's record alone.)"""
    lease = Lease("me", T0 + timedelta(seconds=10))
    obj = new_lease("lockheed-x", "ns", LockState("x").with_leases([lease]), {}, T0)
    obj["metadata"]["resourceVersion"] = "1"
    now = T0
    for i, step in enumerate(steps, start=2):
        now += timedelta(milliseconds=step)
        # A renewal's expiry (the latest bound, to the microsecond, plus the
        # duration) is not one decoded from the Lease (whole seconds from here):
        # a write that keeps the lease as read is a waiter's (see the docstring).
        expires = now + timedelta(seconds=10, microseconds=7)
        renewed = LockState("x").with_leases([Lease("me", expires)])
        body = updated_lease("lockheed-x", replace_of(obj, renewed, {}), now)
        before, after = obj["spec"]["renewTime"], body["spec"]["renewTime"]
        assert after > before and after >= format_micro_time(now)
        obj = {**body, "metadata": {**body["metadata"], "resourceVersion": str(i)}}


def test_client_go_compares_the_record_to_the_second() -> None:
    obj = client_go_lease(renew="2026-11-26T07:00:29.123456Z")
    same = client_go_lease(renew="2026-11-26T07:00:29.987654+00:00")
    later = client_go_lease(renew="2026-11-26T07:00:30.000001Z")
    assert peer_view(obj) == peer_view(same) != peer_view(later)
    other = client_go_lease(renew="2026-11-26T07:00:29.123456Z", holder="go-2")
    assert peer_view(other) != peer_view(obj)
    assert decode_lease("x", obj, observed=T0).peer_view == peer_view(obj)


def test_release_writes_what_client_go_release_on_cancel_writes() -> None:
    obj = client_go_lease(holder="me", stamps=[T0])
    body = updated_lease("lockheed-x", replace_of(obj, LockState("x"), {}), T0)
    assert body["spec"] == {
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "acquireTime": "2026-11-26T07:00:30.000000Z",
        "renewTime": "2026-11-26T07:00:30.000000Z",
        "leaseTransitions": 3,
    }


@pytest.mark.parametrize(
    ("state", "why"),
    [
        (
            LockState("x").with_leases([Lease("a", T0), Lease("b", T0)]),
            "2 holders",
        ),
        (LockState("x", "shared").with_leases([Lease("a", T0)]), "lock type 'shared'"),
    ],
)
def test_a_lease_has_one_holder(state: LockState, why: str) -> None:
    with pytest.raises(LockStateError, match=why):
        new_lease("lockheed-x", "ns", state, {}, T0)
    with pytest.raises(LockStateError, match="one holder"):
        updated_lease("lockheed-x", replace_of(client_go_lease(), state, {}), T0)


def test_round_trip_through_json() -> None:
    state = LockState("x", tags=("a",)).with_leases([Lease("me", T0 + timedelta(seconds=30))])
    obj = json.loads(json.dumps(new_lease("lockheed-x", "ns", state, {}, T0)))
    obj["metadata"]["resourceVersion"] = "1"
    obj["metadata"]["managedFields"] = [stamped(T0)]
    record = decode_lease("x", obj, observed=T0 + SECOND)
    assert record.state is not None and record.state.tags == ("a",)
    assert holder_of(record) == Lease("me", T0 + 31 * SECOND)
