"""The sync Lock against every locker: the ConfigMap and Lease lockers on the real
control plane, and the Memory locker held to the same semantics."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from lockheed import (
    Condition,
    ConfigMapLocker,
    Event,
    EventCode,
    LeaseLocker,
    LockLost,
    LockNotHeld,
    LockStateError,
    LockTimeout,
    MemoryLocker,
    acquired,
    list_locks,
    tags_contain,
)
from lockheed._core import Read
from lockheed._leasecodec import format_micro_time, lease_seconds
from lockheed._state import Record, StateFormatError, decode_state, encode_state, format_time
from support import FlakyLocker, NewLock, Requests


def read(locker: Any, name: str) -> Record | None:
    result: Record | None = locker.execute(Read(name))
    return result


def store_raw(locker: Any, name: str, data: str | None, annotations: dict[str, str]) -> None:
    """Write a lock object as some other program would (not through the core)."""
    if isinstance(locker, MemoryLocker):
        locker.put_raw(name, data, annotations)
        return
    obj_name = locker.object_name(name)
    body: dict[str, Any]
    if isinstance(locker, LeaseLocker):
        body = lease_body(locker, obj_name, data, annotations)
    else:
        assert isinstance(locker, ConfigMapLocker)
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": obj_name,
                "labels": {"lockheed/lock": ""},
                "annotations": annotations,
            },
            "data": {} if data is None else {"lock": data},
        }
    status, _ = locker.api.request("GET", "/" + obj_name)
    if status == 404:
        locker.api.request("POST", body=body)
    else:
        current = read(locker, name)
        assert current is not None
        body["metadata"]["resourceVersion"] = current.version
        locker.api.request("PUT", "/" + obj_name, body=body)


def lease_body(
    locker: LeaseLocker, obj_name: str, data: str | None, annotations: dict[str, str]
) -> dict[str, Any]:
    """The Lease another program would write for a ConfigMap document: its one
    holder in the spec, its tags in lockheed's annotation; a holder without a
    lease duration for a document that is not a lock state (malformed)."""
    try:
        state = decode_state(data)
    except StateFormatError:
        state = None
    spec: dict[str, Any] = {"holderIdentity": "someone"}
    annotations = dict(annotations)
    if state is not None:
        assert len(state.leases) <= 1, "a Lease has one holder"
        spec = {}
        if state.tags:
            annotations["lockheed/tags"] = json.dumps(list(state.tags))
        _, now = locker.clock.bounds()
        for lease in state.leases.values():
            spec = {
                "holderIdentity": lease.instance_id,
                "leaseDurationSeconds": lease_seconds(lease.expires, now),
                "renewTime": format_micro_time(now),
            }
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": obj_name, "labels": {"lockheed/lock": ""}, "annotations": annotations},
        "spec": spec,
    }


def not_on_leases(locker: Any, why: str) -> None:
    if isinstance(locker, LeaseLocker):
        pytest.skip(f"ConfigMap format only: {why}")


def holders(locker: Any, name: str) -> list[str]:
    record = read(locker, name)
    assert record is not None and record.state is not None
    return sorted(record.state.leases)


def test_acquire_release_and_fencing_tokens(locker: Any, new_lock: NewLock) -> None:
    lock = new_lock("build").with_duration(30)
    first = lock.acquire()
    assert lock.held and lock.fencing_token == first
    assert lock.expires_at is not None
    assert holders(locker, "build") == [lock.instance_id]
    lock.release()
    assert not lock.held and holders(locker, "build") == []
    tokens = [first]
    for _ in range(3):
        other = new_lock("build").with_duration(30)
        with other:
            assert other.fencing_token is not None
            tokens.append(other.fencing_token)
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)


def test_go_wire_format_written(locker: Any, new_lock: NewLock) -> None:
    lock = new_lock("wire").with_duration(30).with_tags(["a", "b"])
    lock.acquire()
    record = read(locker, "wire")
    assert record is not None and record.state is not None
    state = record.state
    assert state.name == "wire" and state.lock_type == "mutex" and state.tags == ("a", "b")
    lease = state.leases[lock.instance_id]
    assert lease.expires == lock.expires_at
    assert format_time(lease.expires).endswith("Z")
    lock.release()


def test_request_counts(locker: Any, requests: Requests, new_lock: NewLock) -> None:
    lock = new_lock("counted").with_duration(30)
    before = requests.snapshot()
    lock.acquire()  # a new lock: GET 404, POST it free, PUT our lease with its token
    assert requests.since(before) == {"get": 1, "create": 1, "update": 1}
    before = requests.snapshot()
    lock.renew()
    assert requests.since(before) == {"update": 1}
    before = requests.snapshot()
    lock.release()
    assert requests.total_since(before) <= 2, requests.since(before)
    assert requests.since(before)["list"] == 0
    if isinstance(locker, LeaseLocker):  # nobody waits: one PUT, ReleaseOnCancel's form
        assert requests.since(before) == {"update": 1}
    before = requests.snapshot()
    lock.acquire()  # again by the same instance: one PUT from the object it last wrote
    assert requests.since(before) == {"update": 1}
    lock.release()
    before = requests.snapshot()
    other = new_lock("counted").with_duration(30)
    other.acquire()  # an existing free lock, new to this instance: GET + PUT
    assert requests.since(before) == {"get": 1, "update": 1}
    other.release()
    before = requests.snapshot()
    # Someone wrote since this instance's last write: a conflict, then one request
    # for the newer version, then the PUT. A fair contender with no watch open
    # reads it (a watch it would open shows only the versions that concern it:
    # see lockheed._queue.view_labels); a racing one opens a watch (kept for
    # later conflicts and waits), and one GET more when its host is too busy to
    # read the watch within the core's REFRESH_WAIT.
    lock.acquire()
    conflict = requests.since(before)
    if hasattr(locker, "api"):  # a Kubernetes locker, sync or asyncio
        assert conflict == {"update": 2, "get": 1}, conflict
    else:  # the Memory locker's watches show every change
        assert conflict == {"update": 2, "watch": 1}, conflict
    lock.release()
    racing = new_lock("counted").with_duration(30).with_fair(False)
    racing.acquire()
    racing.release()
    lock.acquire()
    lock.release()
    before = requests.snapshot()
    racing.acquire()  # its copy predates lock's writes
    conflict = requests.since(before)
    assert conflict in ({"update": 2, "watch": 1}, {"update": 2, "watch": 1, "get": 1}), conflict
    racing.release()
    assert requests.snapshot()["list"] == 0


def test_timeout_names_holder_and_expiry(locker: Any, new_lock: NewLock) -> None:
    holder = new_lock("busy").with_duration(60)
    holder.acquire()
    waiter = new_lock("busy").with_duration(60)
    with pytest.raises(LockTimeout) as info:
        waiter.acquire(timeout=0.3)
    assert info.value.holder == holder.instance_id
    assert info.value.expires == holder.expires_at
    assert holder.instance_id in str(info.value)
    with pytest.raises(LockTimeout):
        waiter.acquire(blocking=False)
    assert not waiter.held
    holder.release()


def test_release_wakes_waiter_by_watch(locker: Any, requests: Requests, new_lock: NewLock) -> None:
    holder = new_lock("handoff").with_duration(60)
    holder.acquire()
    waiter = new_lock("handoff").with_duration(60)
    waiting = threading.Event()
    got: list[int] = []

    def wait() -> None:
        waiting.set()
        got.append(waiter.acquire(timeout=20))

    thread = threading.Thread(target=wait)
    before = requests.snapshot()
    thread.start()
    waiting.wait(5)
    # The waiter is parked on a watch: give it the chance to register, then release.
    deadline = time.monotonic() + 5
    while requests.since(before)["watch"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    holder.release()
    thread.join(25)
    assert got and waiter.held, "the waiter was not woken by the release"
    # Woken by the watch long before the holder's 60 s lease would end, with no polling:
    # one read, one watch, one write (plus at most one retry after a conflict).
    assert requests.since(before)["watch"] <= 2
    assert got[0] > (holder.fencing_token or 0)
    waiter.release()


def test_waits_for_expiry_of_dead_holder(
    locker: Any, requests: Requests, new_lock: NewLock
) -> None:
    dead = new_lock("expiring").with_duration(1.5)
    dead.acquire()  # never renewed, never released: like a killed process
    waiter = new_lock("expiring").with_duration(30)
    before = requests.snapshot()
    start = time.monotonic()
    waiter.acquire(timeout=10)
    waited = time.monotonic() - start
    assert waiter.held
    # lease end plus the server clock's one-second uncertainty; a Lease rounds the
    # duration up to whole seconds and dates it by the server's one-second stamp
    assert waited < 1.5 + 2.5 + (2 if isinstance(locker, LeaseLocker) else 0)
    assert requests.since(before)["get"] <= 2  # woke on the expiry time, not by polling
    waiter.release()
    with pytest.raises(LockLost):
        dead.release()
    assert holders(locker, "expiring") == []


def test_force_takeover_only_when_condition_matches(locker: Any, new_lock: NewLock) -> None:
    holder = new_lock("forced").with_duration(60).with_tags(["preemptible"])
    lost = threading.Event()
    holder.on_lost(lambda exc: lost.set())
    holder.acquire()
    no = new_lock("forced").with_duration(60).with_force(tags_contain("critical"))
    with pytest.raises(LockTimeout):
        no.acquire(timeout=0.2)
    yes = new_lock("forced").with_duration(60).with_force(tags_contain("preemptible"))
    yes.acquire(timeout=1)
    assert holders(locker, "forced") == [yes.instance_id]
    with pytest.raises(LockLost) as info:
        holder.renew()
    assert info.value.holder == yes.instance_id
    assert lost.is_set() and not holder.held
    with pytest.raises(LockLost):
        holder.release()
    assert holders(locker, "forced") == [yes.instance_id]  # the new holder is untouched
    yes.release()


def test_tags_union_reset_and_sync_on_release(locker: Any, new_lock: NewLock) -> None:
    def tags() -> tuple[str, ...]:
        record = read(locker, "tagged")
        assert record is not None and record.state is not None
        return record.state.tags

    with new_lock("tagged").with_tags(["a", "b"]):
        assert tags() == ("a", "b")
    with new_lock("tagged").with_tags(["c"]):
        assert tags() == ("a", "b", "c")
    lock = new_lock("tagged").with_tags(["d"]).with_reset_tags()
    lock.acquire()
    assert tags() == ("d",)
    store_raw(locker, "tagged", _state_json(locker, "tagged", extra_tag="x"), {})
    lock.release()
    assert tags() == ("d",)  # reset-tags applies on release as well


def _state_json(locker: Any, name: str, extra_tag: str) -> str:
    """The stored document with one more tag, as another writer would change it."""
    record = read(locker, name)
    assert record is not None and record.state is not None
    doc = json.loads(encode_state(record.state))
    doc["tags"] = [*doc.get("tags", []), extra_tag]
    return json.dumps(doc)


def test_go_reservation_is_honoured(locker: Any, new_lock: NewLock) -> None:
    not_on_leases(locker, "Go lockheed's reservations exist only on its ConfigMaps")
    later = datetime.now(timezone.utc) + timedelta(seconds=30)
    reservation = {
        "reserved/by": "go-instance",
        "reserved/expires": later.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    store_raw(locker, "reserved", '{"name":"reserved","lockType":"","leases":null}', reservation)
    lock = new_lock("reserved").with_duration(30)
    with pytest.raises(LockTimeout) as info:
        lock.acquire(timeout=0.3)
    assert info.value.holder == "go-instance"
    earlier = datetime.now(timezone.utc) - timedelta(seconds=5)
    expired = {**reservation, "reserved/expires": earlier.strftime("%Y-%m-%dT%H:%M:%SZ")}
    store_raw(locker, "reserved", '{"name":"reserved","lockType":"","leases":null}', expired)
    lock.acquire(timeout=1)
    lock.release()
    record = read(locker, "reserved")
    assert record is not None
    assert record.meta.get("reserved/by") == "go-instance"  # never written by us, never removed


def test_lost_by_renewal_finding_another_holder(locker: Any, new_lock: NewLock) -> None:
    events: list[Event] = []
    a = new_lock("renewed").with_duration(3).with_renew_interval(0.2).with_tags(["a"])
    a.with_event_handler(events.append)
    lost = threading.Event()
    a.on_lost(lambda exc: lost.set())
    a.acquire()
    b = new_lock("renewed").with_duration(30).with_force(tags_contain("a"))
    b.acquire(timeout=1)
    assert lost.wait(5), "the renewal thread did not report the loss"
    assert not a.held and isinstance(a.lost, LockLost)
    assert any(e.code == EventCode.LOST for e in events)
    with pytest.raises(LockLost):
        a.release()
    assert holders(locker, "renewed") == [b.instance_id]
    b.release()


def test_deleted_object_is_a_loss(locker: Any, new_lock: NewLock) -> None:
    lock = new_lock("deleted").with_duration(30)
    lock.acquire()
    if isinstance(locker, MemoryLocker):
        locker.delete("deleted")
    else:
        locker.api.request("DELETE", "/" + locker.object_name("deleted"))
    with pytest.raises(LockLost):
        lock.renew()
    assert not lock.held


def test_lost_by_deadline_when_renewals_keep_failing(locker: Any, new_lock: NewLock) -> None:
    flaky = FlakyLocker(locker)
    lock = new_lock("partitioned", flaky).with_duration(2).with_renew_interval(0.3)
    lost = threading.Event()
    lock.on_lost(lambda exc: lost.set())
    lock.acquire()
    sent = time.monotonic()
    flaky.broken.set()
    assert lost.wait(5)
    declared = time.monotonic()
    assert declared <= sent + 2.0  # no later than the lease's end (minus the margin, plus jitter)
    assert not lock.held
    flaky.broken.clear()
    with pytest.raises(LockLost):
        lock.release()
    assert holders(locker, "partitioned") == []  # our lease was still there: cleaned up


def test_malformed_state_refused_and_kept(locker: Any, new_lock: NewLock) -> None:
    store_raw(locker, "broken", "this is not json", {})
    lock = new_lock("broken").with_duration(30)
    with pytest.raises(LockStateError):
        lock.acquire(timeout=1)
    record = read(locker, "broken")
    assert record is not None and record.state is None and record.error
    forced = new_lock("broken").with_duration(30).with_force(acquired(True))
    forced.acquire(timeout=1)
    assert holders(locker, "broken") == [forced.instance_id]
    forced.release()


def test_two_live_leases_in_a_mutex_refused(locker: Any, new_lock: NewLock) -> None:
    not_on_leases(locker, "a Lease cannot hold two leases (see test_lease.py)")
    later = format_time(datetime.now(timezone.utc) + timedelta(minutes=5))
    doc = (
        '{"name":"double","lockType":"mutex","leases":{'
        f'"a":{{"instanceID":"a","expires":"{later}"}},'
        f'"b":{{"instanceID":"b","expires":"{later}"}}}}}}'
    )
    store_raw(locker, "double", doc, {})
    with pytest.raises(LockStateError):
        new_lock("double").acquire(timeout=1)
    assert holders(locker, "double") == ["a", "b"]


@pytest.mark.parametrize("name", ["", "Upper", "under_score", "dash-", "x" * 250, "a/b"])
def test_invalid_names_rejected_before_any_request(
    locker: Any, requests: Requests, name: str, new_lock: NewLock
) -> None:
    before = requests.snapshot()
    with pytest.raises(ValueError, match="lock name"):
        new_lock(name)
    assert requests.total_since(before) == 0


def test_directives_validate_input(locker: Any, new_lock: NewLock) -> None:
    lock = new_lock("directives")
    with pytest.raises(ValueError, match="negative"):
        lock.with_duration(-1)
    with pytest.raises(TypeError):
        lock.with_duration("30s")
    with pytest.raises(ValueError, match="tags"):
        lock.with_tags([""])
    with pytest.raises(TypeError):
        lock.with_force("tags contains x")
    with pytest.raises(ValueError, match="timeout"):
        lock.acquire(timeout=-1)
    with pytest.raises(LockNotHeld):
        lock.release()


def test_never_expiring_lease(locker: Any, new_lock: NewLock) -> None:
    lock = new_lock("forever").with_duration(0)
    lock.acquire()
    record = read(locker, "forever")
    assert record is not None and record.state is not None
    assert format_time(record.state.leases[lock.instance_id].expires) == "9999-12-31T23:59:59Z"
    with pytest.raises(LockTimeout) as info:
        new_lock("forever").acquire(timeout=0.2)
    assert info.value.holder == lock.instance_id
    lock.release()


def test_stop_signal_aborts_a_waiting_acquire(locker: Any, new_lock: NewLock) -> None:
    holder = new_lock("stoppable").with_duration(60)
    holder.acquire()
    stop = threading.Event()
    waiter = new_lock("stoppable").with_stop(stop)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            waiter.acquire()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    stop.set()
    thread.join(10)
    assert not thread.is_alive() and errors and not waiter.held
    holder.release()


def test_list_locks_with_conditions(locker: Any, new_lock: NewLock) -> None:
    a = new_lock("list-a").with_duration(60).with_tags(["x", "y"])
    b = new_lock("list-b").with_duration(60).with_tags(["y"])
    a.acquire()
    b.acquire()
    b.release()

    def names(where: Condition | None) -> list[str]:
        return [i.name for i in list_locks(locker, where)]

    assert names(None) == ["list-a", "list-b"]
    assert names(tags_contain("x")) == ["list-a"]
    assert names(tags_contain("y") & acquired(True)) == ["list-a"]
    assert names(acquired(False)) == ["list-b"]
    assert names(tags_contain("x") | acquired(False)) == ["list-a", "list-b"]
    info = list_locks(locker, tags_contain("x"))[0]
    assert [h.instance_id for h in info.holders] == [a.instance_id]
    a.release()
