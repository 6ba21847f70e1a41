"""What only a Lease on the real API server can show: the server's stamp of every
write, expiry judged by that stamp whatever a writer's clock says, the fallback
rules for a Lease without a stamp, one holder per Lease, and RBAC on leases.

Every lock behaviour (acquire, hand-off, renewal, loss, listing, request counts)
also runs on Leases through the ``lease`` parameter of ``make_locker``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from lockheed import (
    AsyncLeaseLocker,
    AsyncLock,
    ConfigMapLocker,
    Event,
    EventCode,
    LeaseLocker,
    Lock,
    LockForbidden,
    LockStateError,
    LockTimeout,
    acquired,
    alist_locks,
    list_locks,
    tags_contain,
)
from lockheed._clock import ServerClock
from lockheed._core import loss_margin
from lockheed._leasecodec import STALE_MARGIN, format_micro_time, peer_view, server_stamp
from lockheed._state import parse_time
from lockheed._sync.watcher import WatchStream
from lockheed.testing.plugin import RestrictedUserFactory
from support import Api, LoopThread

pytestmark = pytest.mark.lockheed_kube

UTC = timezone.utc
LEASES = {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"]}
Lockers = Any  # make(config=None) -> LeaseLocker


@pytest.fixture
def leases(lockheed_namespace: str, lockheed_kubeconfig: Path) -> Iterator[Lockers]:
    """A factory of Lease lockers on the test namespace; each is a fresh candidate
    that has seen nothing yet."""
    made: list[LeaseLocker] = []

    def make(config: Any = None) -> LeaseLocker:
        locker = LeaseLocker(lockheed_namespace, config=config or lockheed_kubeconfig)
        made.append(locker)
        return locker

    yield make
    for locker in made:
        locker.close()


def get(locker: LeaseLocker, name: str) -> dict[str, Any]:
    status, obj = locker.api.request("GET", "/" + locker.object_name(name))
    assert status == 200, status
    found: dict[str, Any] = obj
    return found


def put_lease(
    locker: LeaseLocker, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """Create or overwrite the Lease as another program (client-go) would write it."""
    obj_name = locker.object_name(name)
    body: dict[str, Any] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": obj_name, "labels": {"lockheed/lock": ""}},
        "spec": spec,
    }
    if annotations:
        body["metadata"]["annotations"] = annotations
    status, current = locker.api.request("GET", "/" + obj_name)
    if status == 404:
        status, obj = locker.api.request("POST", body=body)
    else:
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        status, obj = locker.api.request("PUT", "/" + obj_name, body=body)
    assert status in (200, 201), status
    written: dict[str, Any] = obj
    return written


def strip_stamps(locker: LeaseLocker, name: str) -> dict[str, Any]:
    """Remove managedFields the documented way; the server adds none back on updates."""
    obj = get(locker, name)
    obj["metadata"]["managedFields"] = [{}]
    status, stripped = locker.api.request("PUT", "/" + locker.object_name(name), body=obj)
    assert status == 200 and not stripped["metadata"].get("managedFields"), stripped
    result: dict[str, Any] = stripped
    return result


def holder_spec(holder: str, seconds: int, renew: datetime) -> dict[str, Any]:
    return {
        "holderIdentity": holder,
        "leaseDurationSeconds": seconds,
        "acquireTime": format_micro_time(renew),
        "renewTime": format_micro_time(renew),
        "leaseTransitions": 5,
    }


def stamp_of(obj: dict[str, Any]) -> datetime:
    stamp = server_stamp(obj["metadata"])
    assert stamp is not None, obj["metadata"]
    return stamp


def wait_for_server_time(locker: LeaseLocker, when: datetime) -> None:
    """Let server time pass ``when`` (no event marks the passing of time)."""
    locker.api.request("GET", "/" + locker.object_name("clock-sample"))  # a fresh Date
    time.sleep(max(0.0, locker.clock.monotonic_at(when) - time.monotonic()) + 0.01)


def now_server(locker: LeaseLocker) -> datetime:
    return locker.clock.bounds()[1]


# ------------------------------------------------------- the server's stamp


def test_the_server_stamps_every_write_of_ours(leases: Lockers) -> None:
    """The ground of the expiry rule: each of our writes that changes the Lease
    (acquire, renew, release) carries the server's time of that write, to the second."""
    locker = leases()
    lock = Lock("stamped", locker).with_duration(30)
    stamps = []
    for step in (lock.acquire, lock.renew, lock.release):
        before, _ = locker.clock.bounds()
        step()
        _, after = locker.clock.bounds()
        obj = get(locker, "stamped")
        stamp = stamp_of(obj)
        # truncated to the second, between what the server's clock read before and after
        assert before - timedelta(seconds=1) <= stamp <= after
        stamps.append(stamp)
        time.sleep(1.1)  # the stamp has whole seconds: let the next write get a later one
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


def test_a_time_sent_by_a_writer_is_replaced_by_the_servers(leases: Lockers) -> None:
    locker = leases()
    obj = put_lease(locker, "forged", holder_spec("w", 15, now_server(locker)))
    obj["metadata"]["managedFields"][0]["time"] = "2000-01-01T00:00:00Z"
    obj["spec"]["renewTime"] = format_micro_time(now_server(locker))
    status, written = locker.api.request("PUT", "/lockheed-forged", body=obj)
    assert status == 200
    assert stamp_of(written) > datetime(2020, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------- stamped expiry


@pytest.mark.parametrize("skew", [-3600, 3600], ids=["writer-an-hour-behind", "an-hour-ahead"])
def test_a_live_holder_with_a_skewed_clock_is_not_deposed_early(leases: Lockers, skew: int) -> None:
    """renewTime from a clock an hour off plays no part: the holder keeps its lease
    for its duration after the server's stamp of its write, and no longer."""
    writer = leases()
    written = put_lease(
        writer,
        "skewed",
        holder_spec("skewed-holder", 3, now_server(writer) + timedelta(seconds=skew)),
    )
    stamp = stamp_of(written)
    contender = Lock("skewed", leases()).with_duration(30)
    with pytest.raises(LockTimeout) as info:
        contender.acquire(blocking=False)
    assert info.value.holder == "skewed-holder"
    assert info.value.expires == stamp + timedelta(seconds=1 + 3)
    contender.acquire(timeout=15)  # not an hour: by the server's stamp
    assert get(writer, "skewed")["spec"]["leaseTransitions"] == 6
    contender.release()


def test_a_fresh_candidate_takes_a_lease_last_renewed_long_ago_at_once(leases: Lockers) -> None:
    """client-go's rule would make a candidate that has just started wait a whole
    lease after first seeing the record; the server's stamp says it ran out already."""
    writer = leases()
    written = put_lease(writer, "stale", holder_spec("gone", 2, now_server(writer)))
    wait_for_server_time(writer, stamp_of(written) + timedelta(seconds=1 + 2))
    fresh = Lock("stale", leases()).with_duration(30)
    fresh.acquire(blocking=False)
    assert get(writer, "stale")["spec"]["holderIdentity"] == fresh.instance_id
    fresh.release()


def test_a_release_by_client_go_frees_the_lease_at_once(leases: Lockers, api: Api) -> None:
    writer = leases()
    now = now_server(writer)
    release = {**holder_spec("", 1, now), "leaseTransitions": 2}  # ReleaseOnCancel
    put_lease(writer, "released", release)
    lock = api.lock("released", leases()).with_duration(30)
    lock.acquire(blocking=False)
    spec = get(writer, "released")["spec"]
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == (lock.instance_id, 3)
    lock.release()


@pytest.mark.parametrize("offset", [-600.0, 600.0])
def test_our_skewed_wall_clock_neither_steals_nor_overwaits(
    lockheed_namespace: str, lockheed_kubeconfig: Path, leases: Lockers, offset: float
) -> None:
    """A contender whose host clock is ten minutes off judges a Lease on the server's clock."""
    holder = Lock("our-skew", leases()).with_duration(3)
    holder.acquire()
    clock = ServerClock(wall=lambda: time.time() + offset)
    with LeaseLocker(lockheed_namespace, config=lockheed_kubeconfig, clock=clock) as skewed:
        contender = Lock("our-skew", skewed).with_duration(30)
        with pytest.raises(LockTimeout):
            contender.acquire(timeout=1)  # ahead: a naive contender would take it
        contender.acquire(timeout=15)  # behind: a naive one would wait ten more minutes
        contender.release()


class WideClock(ServerClock):
    """A server clock that knows the server's time only to within two minutes."""

    def observe(self, server: float, sent: float, received: float, resolution: float = 1.0) -> None:
        super().observe(server - 60.0, sent, received, resolution + 120.0)


def test_a_foreign_lease_runs_out_by_sight_however_wide_the_server_clock(
    lockheed_namespace: str, lockheed_kubeconfig: Path, leases: Lockers
) -> None:
    """client-go's rule beside the server's stamp: a contender whose estimate of the
    server's time is two minutes wide takes a Lease its holder stopped renewing
    once the lease has run out since it first saw the record (on its monotonic
    clock), not a minute later when the earliest server time passes the stamp;
    and not before: right after the write the holder keeps it."""
    writer = leases()
    put_lease(writer, "wide", holder_spec("stopped", 3, now_server(writer)))
    with LeaseLocker(lockheed_namespace, config=lockheed_kubeconfig, clock=WideClock()) as wide:
        contender = Lock("wide", wide).with_duration(30)
        with pytest.raises(LockTimeout) as info:
            contender.acquire(blocking=False)
        assert info.value.holder == "stopped"
        earliest, latest = wide.clock.bounds()
        assert latest - earliest > timedelta(seconds=100)
        contender.acquire(timeout=20)  # the server rule alone: a minute or more
        assert get(writer, "wide")["spec"]["holderIdentity"] == contender.instance_id
        contender.release()


@pytest.mark.parametrize("stamps", ["stamped", "unstamped"])
def test_a_line_that_keeps_changing_never_keeps_a_dead_holder_alive(
    leases: Lockers, stamps: str
) -> None:
    """Every join and leave of the line is a new version of the Lease, but not a
    new record of its holder: neither rule dates the holder's lease from it.
    So a dead holder's lease runs out on time while waiters keep coming and
    going, and each of them names the same end of it."""
    writer = leases()
    written = put_lease(writer, "busy-line", holder_spec("dead", 3, now_server(writer)))
    if stamps == "unstamped":
        strip_stamps(writer, "busy-line")
    waiter = Lock("busy-line", leases()).with_duration(30)
    got = threading.Event()

    def wait() -> None:
        waiter.acquire(timeout=30)
        got.set()

    thread = threading.Thread(target=wait)
    thread.start()
    churner = Lock("busy-line", leases()).with_duration(30)
    named: list[datetime] = []
    versions = set()
    deadline = time.monotonic() + 15  # the lease is 3 s: ample, however slow the host
    while not got.is_set() and time.monotonic() < deadline:
        with pytest.raises(LockTimeout) as info:
            churner.acquire(timeout=0.3)  # joins the line, then leaves it
        versions.add(get(writer, "busy-line")["metadata"]["resourceVersion"])
        if info.value.holder == "dead":
            assert info.value.expires is not None
            named.append(info.value.expires)
    # (before the join: once the line stops changing, the old rules end it too)
    assert got.is_set(), "the dead holder's lease did not run out while the line kept changing"
    thread.join(30)
    assert waiter.held
    assert len(named) >= 3 and len(versions) >= 3, (named, versions)
    assert set(named) == {named[0]}, named
    if stamps == "stamped":
        assert named[0] == stamp_of(written) + timedelta(seconds=1 + 3)
    assert get(writer, "busy-line")["spec"]["holderIdentity"] == waiter.instance_id
    waiter.release()


# ------------------------------------------- a Lease without a server stamp


def test_an_unstamped_record_renewed_an_hour_ago_is_taken_at_once(
    leases: Lockers, api: Api
) -> None:
    writer = leases()
    hour_ago = now_server(writer) - timedelta(hours=1)
    put_lease(writer, "unstamped-stale", holder_spec("gone", 10, hour_ago))
    strip_stamps(writer, "unstamped-stale")
    lock = api.lock("unstamped-stale", leases()).with_duration(30)
    lock.acquire(blocking=False)  # renewTime + 10 s + 60 s is far in the server's past
    assert get(writer, "unstamped-stale")["spec"]["holderIdentity"] == lock.instance_id
    lock.release()


@pytest.mark.parametrize("skew", [-30, 3600], ids=["behind-within-margin", "an-hour-ahead"])
def test_an_unstamped_live_holder_is_judged_by_first_sight(leases: Lockers, skew: int) -> None:
    """Without a stamp, client-go's rule: the lease runs for its duration after we
    first saw this version, whatever renewTime says within the 60 s margin."""
    assert timedelta(seconds=-skew) < STALE_MARGIN
    writer = leases()
    renew = now_server(writer) + timedelta(seconds=skew)
    put_lease(writer, "unstamped-live", holder_spec("live", 3, renew))
    strip_stamps(writer, "unstamped-live")
    contender_locker = leases()
    contender = Lock("unstamped-live", contender_locker).with_duration(30)
    with pytest.raises(LockTimeout) as info:
        contender.acquire(blocking=False)
    assert info.value.holder == "live" and info.value.expires is not None
    seen = info.value.expires - timedelta(seconds=3)  # our first sight (latest bound)
    assert abs((seen - now_server(contender_locker)).total_seconds()) < 10  # not renewTime
    contender.acquire(timeout=15)
    contender.release()


# ----------------------------------------------------------- one holder only


def test_another_lock_type_is_refused_and_kept(leases: Lockers, api: Api) -> None:
    writer = leases()
    written = put_lease(writer, "shared", {}, {"lockheed/lock-type": "shared"})
    with pytest.raises(LockStateError, match="shared"):
        api.lock("shared", leases()).acquire(timeout=1)
    after = get(writer, "shared")
    assert after["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]


def test_an_uninterpretable_holder_is_never_overwritten(leases: Lockers, api: Api) -> None:
    writer = leases()
    written = put_lease(writer, "odd", {"holderIdentity": "someone"})  # no duration
    with pytest.raises(LockStateError, match="leaseDurationSeconds"):
        api.lock("odd", leases()).with_duration(30).acquire(timeout=1)
    assert (
        get(writer, "odd")["metadata"]["resourceVersion"]
        == (written["metadata"]["resourceVersion"])
    )
    info = list_locks(writer)[0]
    assert info.name == "odd" and info.error is not None


# ------------------------------------------------------------ the objects


def test_leases_and_configmaps_are_separate_locks(
    leases: Lockers, lockheed_namespace: str, lockheed_kubeconfig: Path, api: Api
) -> None:
    lease_locker = leases()
    with ConfigMapLocker(lockheed_namespace, config=lockheed_kubeconfig) as configmaps:
        on_lease = api.lock("both", lease_locker).with_duration(30).with_tags(["lease"])
        on_configmap = api.lock("both", configmaps).with_duration(30)
        t1 = on_lease.acquire(blocking=False)
        t2 = on_configmap.acquire(blocking=False)  # another object: not held
        assert t2 > t1
        assert [i.tags for i in list_locks(lease_locker)] == [("lease",)]
        assert [i.tags for i in list_locks(configmaps)] == [()]
        on_configmap.release()
        on_lease.release()
    obj = get(lease_locker, "both")
    assert obj["metadata"]["annotations"]["lockheed/name"] == "both"
    parse_time(obj["spec"]["renewTime"])


def test_alist_locks_filters_leases(
    lockheed_namespace: str, lockheed_kubeconfig: Path, loop_thread: LoopThread
) -> None:
    async def scenario() -> list[tuple[str, bool]]:
        async with AsyncLeaseLocker(lockheed_namespace, config=lockheed_kubeconfig) as locker:
            held = AsyncLock("alist-held", locker).with_duration(30).with_tags(["a"])
            await held.acquire()
            async with AsyncLock("alist-free", locker).with_tags(["a", "b"]):
                pass
            found = await alist_locks(locker, tags_contain("a") & acquired(True))
            everything = await alist_locks(locker)
            await held.release()
            assert [i.holders[0].instance_id for i in found] == [held.instance_id]
            return [(i.name, i.acquired) for i in everything]

    assert loop_thread.run(scenario()) == [("alist-free", False), ("alist-held", True)]


def test_rbac_on_leases(
    lockheed_namespace: str,
    lockheed_restricted_user: RestrictedUserFactory,
    leases: Lockers,
    api: Api,
) -> None:
    """get, create, update and watch on leases are enough to lock; list to list."""
    user = lockheed_restricted_user([{**LEASES, "verbs": ["get", "create", "update", "watch"]}])
    locker = leases(user)
    lock = api.lock("rbac", locker).with_duration(30)
    lock.acquire()
    lock.renew()
    other = api.lock("rbac", locker).with_duration(30)
    with pytest.raises(LockTimeout):
        other.acquire(timeout=0.5)  # waits by watch
    lock.release()
    with pytest.raises(LockForbidden) as info:
        list_locks(locker)
    assert (info.value.verb, info.value.resource) == ("list", "leases")

    reader = lockheed_restricted_user([{**LEASES, "verbs": ["get", "watch"]}], name="lease-reader")
    with pytest.raises(LockForbidden) as info:
        api.lock("rbac-new", leases(reader)).acquire(timeout=1)
    error = info.value
    assert (error.verb, error.resource, error.namespace) == ("create", "leases", lockheed_namespace)


def test_a_holders_belief_counts_from_the_first_renewal_client_go_can_tell(
    leases: Lockers,
) -> None:
    """client-go times a holder from when it first saw the Lease's record, which
    it compares at one-second resolution: renewals within one second of
    ``renewTime`` are one to it. So after each renewal, the holder's loss
    deadline is at most the first sighting of that record (by a watch here,
    never before the write) plus the lease, less the loss margin. Renewals
    every 0.1 s, right after the acquire (when the estimate of the server's
    time is widest, and may move back), make both kinds of repeat likely."""
    locker = leases()
    duration = 3.0
    holder = Lock("peer", locker).with_duration(duration).with_renew_interval(0.1)
    renewals: list[tuple[str, float]] = []  # (version, loss deadline) after each renewal

    def note(event: Event) -> None:
        if event.code == EventCode.RENEW_OK:
            assert holder._record is not None and holder._deadline is not None
            renewals.append((holder._record.version, holder._deadline))

    holder.with_event_handler(note)
    holder.acquire(blocking=False)
    assert holder._record is not None
    seen: dict[str, tuple[str, float]] = {}  # version: (peer view, first sighting)
    order: list[str] = []
    events = locker.api.watch(locker.object_name("peer"), holder._record.version, 30)
    stream = WatchStream().start(events)
    try:
        end = time.monotonic() + 2 * duration
        while time.monotonic() < end:
            item = stream.next(end - time.monotonic())
            if item is None:
                break
            kind, obj = item
            if kind == "MODIFIED":
                version = obj["metadata"]["resourceVersion"]
                seen.setdefault(version, (peer_view(obj), time.monotonic()))
                order.append(version)
    finally:
        stream.close()
        holder.release()
    margin = loss_margin(timedelta(seconds=duration))
    first: dict[str, float] = {}  # version: first sighting of its run of one peer view
    for before, version in zip([None, *order], order, strict=False):
        view, at = seen[version]
        same = before is not None and seen[before][0] == view
        first[version] = first[before] if same and before is not None else at
    # Each renewal is a write the API server and every watcher see (a spec
    # written as stored would be none: no new version, no new stamp).
    versions = [v for v, _ in renewals]
    assert len(set(versions)) == len(versions), versions
    checked = [(v, d) for v, d in renewals if v in first]
    assert len(checked) >= 20, (len(renewals), len(order))
    runs = len({seen[v][0] for v in order})
    assert runs < len(order) / 2  # most renewals repeat a record client-go has seen
    late = [(v, d - (first[v] + duration - margin)) for v, d in checked]
    assert all(by <= 0 for _, by in late), [x for x in late if x[1] > 0][:5]
