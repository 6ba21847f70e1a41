"""Lock behaviour that only a real API server can show: RBAC, clock skew,
fencing across deletion, and the exact requests sent."""

from __future__ import annotations

import time

import pytest

from lockheed import LockForbidden, LockTimeout
from lockheed._clock import ServerClock
from lockheed.testing.plugin import RestrictedUserFactory
from support import Api, ConfigMapLockers

CONFIGMAPS = {"apiGroups": [""], "resources": ["configmaps"]}


def test_forbidden_names_the_missing_permission(
    lockheed_namespace: str,
    lockheed_restricted_user: RestrictedUserFactory,
    configmap_locker: ConfigMapLockers,
    api: Api,
) -> None:
    reader = lockheed_restricted_user([{**CONFIGMAPS, "verbs": ["get", "watch"]}])
    locker = configmap_locker(reader)
    with pytest.raises(LockForbidden) as info:
        api.lock("rbac", locker).acquire(timeout=1)
    error = info.value
    assert (error.verb, error.resource, error.namespace) == (
        "create",
        "configmaps",
        lockheed_namespace,
    )
    assert "'create'" in str(error) and lockheed_namespace in str(error)
    assert error.lock == "rbac"

    nobody = lockheed_restricted_user([{**CONFIGMAPS, "verbs": ["list"]}], name="nobody")
    with pytest.raises(LockForbidden) as info:
        api.lock("rbac", configmap_locker(nobody)).acquire(timeout=1)
    assert info.value.verb == "get"


def test_forbidden_update_when_only_create_allowed(
    lockheed_restricted_user: RestrictedUserFactory, configmap_locker: ConfigMapLockers, api: Api
) -> None:
    creator = lockheed_restricted_user([{**CONFIGMAPS, "verbs": ["get", "create", "watch"]}])
    lock = api.lock("rbac-free", configmap_locker(creator))
    with pytest.raises(LockForbidden) as info:
        lock.acquire(timeout=5)  # creates the lock free, then taking it is an update
    assert info.value.verb == "update"
    assert not lock.held


@pytest.mark.parametrize("offset", [-600.0, 600.0])
def test_skewed_wall_clock_neither_steals_nor_overwaits(
    configmap_locker: ConfigMapLockers, offset: float, api: Api
) -> None:
    """A host whose wall clock is ten minutes off judges expiry on the server's clock."""
    honest = configmap_locker()
    skewed = configmap_locker(clock=ServerClock(wall=lambda: time.time() + offset))
    holder = api.lock("skew", honest).with_duration(3)
    start = time.monotonic()
    holder.acquire()
    contender = api.lock("skew", skewed).with_duration(30)
    with pytest.raises(LockTimeout):
        contender.acquire(timeout=1)  # ahead: a naive contender would see the lease as expired
    contender.acquire(timeout=20)  # behind: a naive one would wait ten more minutes
    waited = time.monotonic() - start
    assert 3 - 0.05 <= waited < 3 + 2.5
    # The skewed host writes expiry in the server's time, readable by Go's wall-clock check.
    assert contender.expires_at is not None
    real_remaining = contender.expires_at.timestamp() - time.time()
    assert 30 - 3 < real_remaining <= 30 + 1.5
    contender.release()


def test_fencing_token_increases_across_deletion(
    configmap_locker: ConfigMapLockers, api: Api
) -> None:
    locker = configmap_locker()
    first = api.lock("recreated", locker).with_duration(30)
    t1 = first.acquire()
    locker.api.request("DELETE", "/" + locker.object_name("recreated"))
    second = api.lock("recreated", locker).with_duration(30)
    t2 = second.acquire()
    assert t2 > t1
    second.release()


def test_listing_pages_through_every_lock(configmap_locker: ConfigMapLockers, api: Api) -> None:
    locker = configmap_locker()
    for i in range(7):
        with api.lock(f"paged-{i}", locker).with_tags(["paged"]):
            pass
    records = locker.list_records(page_size=3)  # three LIST requests, joined by continue tokens
    assert sorted(r.name for r in records) == [f"paged-{i}" for i in range(7)]


def test_fencing_token_increases_across_a_foreign_writer(
    configmap_locker: ConfigMapLockers, api: Api
) -> None:
    """A writer that knows nothing of tokens (Go lockheed) holds the lock in between."""
    locker = configmap_locker()
    first = api.lock("foreign", locker).with_duration(30)
    t1 = first.acquire()
    first.release()
    obj_name = locker.object_name("foreign")
    _, obj = locker.api.request("GET", "/" + obj_name)
    obj["data"]["lock"] = (
        '{"name":"foreign","lockType":"mutex","leases":{"go":{"instanceID":"go",'
        '"expires":"2000-01-01T00:00:00Z"}}}'
    )
    status, _ = locker.api.request("PUT", "/" + obj_name, body=obj)
    assert status == 200
    second = api.lock("foreign", locker).with_duration(30)
    t2 = second.acquire(timeout=5)  # the foreign lease has expired
    assert t2 > t1
    assert int(obj["metadata"]["resourceVersion"]) < t2
    second.release()
