"""Prometheus metrics and Kubernetes Events (lockheed.metrics).

The counts are read from a fresh ``CollectorRegistry`` per test, with metrics
enabled per locker, so tests never see each other's counts. The Kubernetes
behaviour (requests, hand-offs in line, forced takeovers, losses, Events and
RBAC) is shown on the real control plane; only the naming of every loss
cause and the argument checks use the Memory locker.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter

import lockheed.metrics
from line_watch import LineWatch, line_of
from lockheed import (
    AsyncLock,
    AsyncMemoryLocker,
    ConfigMapLocker,
    LeaseLocker,
    Lock,
    LockBackendError,
    LockLost,
    MemoryLocker,
    _observe,
    acquired,
)
from lockheed._kube_events import KubeEvents
from lockheed._sync.kube import KubeAPI
from lockheed.testing import FaultProxy, Refuse, Reset
from lockheed.testing.plugin import RestrictedUserFactory
from support import Api, ConfigMapLockers

WAIT = 60.0  # any wait here; only reached when something is broken
RBAC_FILE = Path(__file__).resolve().parent.parent / "deploy" / "rbac.yaml"


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def counts(registry: CollectorRegistry) -> dict[str, float]:
    """The lock metrics (no labels) in one dict, to compare at once."""
    names = [
        "lockheed_acquisitions_total",
        "lockheed_handoffs_total",
        "lockheed_takeovers_total",
        "lockheed_locks_held",
        "lockheed_renewal_failures_total",
        "lockheed_acquire_wait_seconds_count",
    ]
    out = {name: value(registry, name) for name in names}
    for cause in _observe.CAUSES:
        found = value(registry, "lockheed_losses_total", cause=cause)
        if found:
            out[f"lost:{cause}"] = found
    return out


def requests_seen(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
    out = {}
    for metric in registry.collect():
        if metric.name == "lockheed_api_requests":
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    key = (sample.labels["verb"], sample.labels["kind"], sample.labels["status"])
                    out[key] = sample.value
    return out


# ---------------------------------------------------------------- off by default


def test_without_enabling_prometheus_client_is_never_imported() -> None:
    """Locks of both APIs, and importing lockheed.metrics itself, import nothing of
    prometheus_client and attach no observer until metrics are enabled."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        import lockheed, lockheed.metrics
        from lockheed import AsyncLock, AsyncMemoryLocker, Lock, MemoryLocker, _observe

        store = MemoryLocker()
        with Lock("a", store).with_duration(30).with_renew_interval(1):
            pass

        async def main():
            async with AsyncLock("b", AsyncMemoryLocker(store)).with_duration(30):
                pass

        asyncio.run(main())
        assert _observe.observer is None
        print(sorted(m for m in sys.modules if m.startswith("prometheus")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_enable_without_prometheus_client_says_what_to_install() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["prometheus_client"] = None  # as if it were not installed
        import lockheed, lockheed.metrics
        try:
            lockheed.metrics.enable()
        except lockheed.metrics.MetricsUnavailable as exc:
            assert isinstance(exc, lockheed.LockError) and isinstance(exc, ImportError)
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT, check=True
    )
    assert "pip install 'lockheed[metrics]'" in out.stdout, out.stdout + out.stderr


# ---------------------------------------------------------------- arguments


def test_bad_arguments_get_clear_errors_and_register_nothing() -> None:
    registry = CollectorRegistry()
    store = MemoryLocker()
    with pytest.raises(TypeError, match="CollectorRegistry"):
        lockheed.metrics.enable(object(), locker=store)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="lockheed locker"):
        lockheed.metrics.enable(registry, locker="not a locker")
    # Enabling the same registry again gives the same metrics: nothing counts twice.
    first = lockheed.metrics.enable(registry, locker=store)
    assert lockheed.metrics.enable(registry, locker=store) is first
    assert _observe.attached(store) == (first,)
    with pytest.raises(ValueError, match="lock_names=False"):
        lockheed.metrics.enable(registry, locker=store, lock_names=True)
    # A registry that already has a metric of one of lockheed's names is refused
    # whole: none of lockheed's metrics is left half registered in it.
    taken = CollectorRegistry()
    Counter("lockheed_losses", "someone else's", registry=taken)
    with pytest.raises(ValueError, match="cannot register lockheed's metrics"):
        lockheed.metrics.enable(taken, locker=MemoryLocker())
    assert [m.name for m in taken.collect()] == ["lockheed_losses"]
    with pytest.raises(TypeError, match="ConfigMap or Lease locker"):
        lockheed.metrics.enable_events(store)
    lockheed.metrics.disable(store)
    assert _observe.attached(store) == ()


def test_events_need_a_configuration_to_create_them() -> None:
    import httpx2

    with httpx2.Client() as client:
        locker = ConfigMapLocker("default", client=client)
        with pytest.raises(ValueError, match="pass config="):
            lockheed.metrics.enable_events(locker)
        locker.close()


def test_lock_names_label_is_off_by_default_and_on_when_asked() -> None:
    plain, named = CollectorRegistry(), CollectorRegistry()
    store = MemoryLocker()
    lockheed.metrics.enable(plain, locker=store)
    lockheed.metrics.enable(named, locker=store, lock_names=True)
    with Lock("nightly", store).with_duration(30):
        assert value(plain, "lockheed_locks_held") == 1
        assert value(named, "lockheed_locks_held", lock="nightly") == 1
    assert value(plain, "lockheed_acquisitions_total") == 1
    assert value(named, "lockheed_acquisitions_total", lock="nightly") == 1
    assert value(named, "lockheed_locks_held", lock="nightly") == 0
    assert registry_labels(plain) <= {"cause", "le"}


def registry_labels(registry: CollectorRegistry) -> set[str]:
    return {
        label
        for metric in registry.collect()
        if not metric.name.startswith("lockheed_api_requests")
        for sample in metric.samples
        for label in sample.labels
    }


# ---------------------------------------------------------------- loss causes


def test_every_way_of_losing_a_lock_is_named() -> None:
    """Each loss path of the shells and the renewer, named by its cause (in memory:
    the causes come from the same core and shell code for every locker)."""
    registry = CollectorRegistry()
    store = MemoryLocker()
    # Where time must pass, a store whose clock is far ahead of the renewer's, so
    # the renewer never looks at its locks by itself: the test does.
    clock = [time.monotonic() + 1e6]
    later = MemoryLocker(monotonic=lambda: clock[0], wall=lambda: clock[0])
    lockheed.metrics.enable(registry, locker=store)
    lockheed.metrics.enable(registry, locker=later)

    def lose(name: str, how: Any) -> None:
        lock = Lock(name, store).with_duration(30)
        lock.acquire()
        how(lock)
        with pytest.raises(LockLost):
            lock.renew()

    forcer = Lock("taken", store).with_duration(30).with_force(acquired(True))
    lose("taken", lambda lock: forcer.acquire())
    lose("deleted", lambda lock: store.delete("deleted"))
    lose("unreadable", lambda lock: store.put_raw("unreadable", "{not json"))
    with Lock("free", store).with_duration(30):
        pass
    free = store.raw("free")
    assert free is not None
    lose("gone", lambda lock: store.put_raw("gone", free[0]))  # no lease of ours any more

    expired = Lock("expired", later).with_duration(30)
    expired.acquire()
    clock[0] += 60  # past the loss deadline: release finds the lease ran out
    with pytest.raises(LockLost, match="run out"):
        expired.release()

    ticked = Lock("ticked", later).with_duration(30)
    ticked.acquire()
    clock[0] += 60
    assert ticked._tick_needs_renewal() is None  # the renewer's look at its deadline
    assert ticked.lost is not None

    async def orphaned() -> None:
        locker = AsyncMemoryLocker(store)
        lockheed.metrics.enable(registry, locker=locker)
        lock = AsyncLock("orphaned", locker).with_duration(30)
        await lock.with_renew_interval(5).acquire()  # scheduled on this loop's renewer

    asyncio.run(orphaned())  # the loop ends while the lock is held
    assert counts(registry) == {
        "lockheed_acquisitions_total": 9,
        "lockheed_handoffs_total": 0,
        "lockheed_takeovers_total": 1,
        "lockheed_locks_held": 1,  # the lock that took "taken" over
        "lockheed_renewal_failures_total": 0,
        "lockheed_acquire_wait_seconds_count": 9,
        "lost:taken_over": 1,
        "lost:deleted": 1,
        "lost:unreadable": 1,
        "lost:lease_gone": 1,
        "lost:expired": 2,
        "lost:renewal_stopped": 1,
    }
    forcer.release()
    assert value(registry, "lockheed_locks_held") == 0


def test_a_failing_observer_is_logged_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any) -> None:
                raise RuntimeError(f"broken {name}")

            return fail

    registry = CollectorRegistry()
    store = MemoryLocker()
    _observe.attach(store, Broken())
    lockheed.metrics.enable(registry, locker=store)
    with caplog.at_level(logging.ERROR, logger="lockheed"):
        lock = Lock("x", store).with_duration(30)
        token = lock.acquire()
        assert lock.held and token == lock.fencing_token
        lock.release()
    assert value(registry, "lockheed_acquisitions_total") == 1  # the others are still told
    failed = [r.getMessage() for r in caplog.records if "observer" in r.getMessage()]
    assert [m.rsplit(" ", 1)[-1] for m in failed] == ["acquired", "released"], failed


# ---------------------------------------------------------------- real control plane


@pytest.mark.lockheed_kube
def test_metrics_of_acquire_wait_handoff_takeover_loss(
    api: Api, configmap_locker: ConfigMapLockers
) -> None:
    """Three instances, each with its own locker, counted in one fresh registry."""
    registry = CollectorRegistry()

    def instance() -> Any:
        locker = configmap_locker()
        lockheed.metrics.enable(registry, locker=locker if api.runner is None else api.twin(locker))
        return api.lock("m", locker).with_duration(30)

    first, waiter, forcer = instance(), instance(), instance()
    first.acquire()
    # A lock used the first time: GET (404), POST (create it free), PUT (take it).
    assert requests_seen(registry) == {
        ("get", "configmaps", "404"): 1,
        ("create", "configmaps", "201"): 1,
        ("update", "configmaps", "200"): 1,
    }
    assert value(registry, "lockheed_locks_held") == 1

    line = LineWatch(configmap_locker(), "m")
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(waiter.acquire, timeout=WAIT)
        line.until(lambda record: waiter.instance_id in line_of(record))
        in_line = time.monotonic()
        before = value(registry, "lockheed_acquire_wait_seconds_sum")
        releasing = time.monotonic()
        first.release()  # hands the lock to the waiter in the same write
        waiting.result(WAIT)
    line.close()
    # The waiter's wait began before it was seen in line and ended after the release began.
    waited = value(registry, "lockheed_acquire_wait_seconds_sum") - before
    assert waited >= releasing - in_line
    assert counts(registry) == {
        "lockheed_acquisitions_total": 2,
        "lockheed_handoffs_total": 1,
        "lockheed_takeovers_total": 0,
        "lockheed_locks_held": 1,
        "lockheed_renewal_failures_total": 0,
        "lockheed_acquire_wait_seconds_count": 2,
    }

    forcer.with_force(acquired(True)).acquire()
    assert value(registry, "lockheed_takeovers_total") == 1
    with pytest.raises(LockLost):
        waiter.renew()  # finds the forcer's lease
    assert counts(registry) == {
        "lockheed_acquisitions_total": 3,
        "lockheed_handoffs_total": 1,
        "lockheed_takeovers_total": 1,
        "lockheed_locks_held": 1,
        "lockheed_renewal_failures_total": 0,
        "lockheed_acquire_wait_seconds_count": 3,
        "lost:taken_over": 1,
    }

    admin = KubeAPI("configmaps", forcer.locker.namespace, config=forcer.locker.config)
    assert admin.request("DELETE", "/lockheed-m")[0] == 200
    admin.close()
    with pytest.raises(LockLost):
        forcer.renew()
    assert counts(registry)["lost:deleted"] == 1
    assert value(registry, "lockheed_locks_held") == 0
    seen = requests_seen(registry)
    assert seen[("update", "configmaps", "404")] == 1  # the renewal of the deleted lock
    assert seen[("watch", "configmaps", "200")] >= 1  # the waiter's watch
    assert all(status != "error" for _, _, status in seen)


@pytest.mark.lockheed_kube
def test_failed_renewals_and_requests_without_answer_are_counted(
    lockheed_fault_proxy: FaultProxy, lockheed_namespace: str
) -> None:
    registry = CollectorRegistry()
    locker = ConfigMapLocker(lockheed_namespace, config=lockheed_fault_proxy.kubeconfig())
    lockheed.metrics.enable(registry, locker=locker)
    lock = Lock("r", locker).with_duration(30)
    lock.acquire()
    with lockheed_fault_proxy.fault(Reset(), Refuse()):
        with pytest.raises(LockBackendError):
            lock.renew()
        with pytest.raises(LockBackendError):
            for _ in locker.api.watch("lockheed-r", None, WAIT):
                pass
    assert value(registry, "lockheed_renewal_failures_total") == 1
    seen = requests_seen(registry)
    assert seen[("update", "configmaps", "error")] == 1
    assert seen[("watch", "configmaps", "error")] == 1
    assert lock.held  # a failed renewal is retried until the loss deadline
    lock.renew()
    lock.release()
    assert value(registry, "lockheed_locks_held") == 0
    assert value(registry, "lockheed_losses_total", cause="expired") == 0
    locker.close()


# ---------------------------------------------------------------- Kubernetes Events


def events_in(namespace: str, kubeconfig: Path) -> list[dict[str, Any]]:
    api = KubeAPI("events", namespace, config=kubeconfig)
    try:
        status, body = api.request("GET")
    finally:
        api.close()
    assert status == 200
    return [e for e in body["items"] if e.get("source", {}).get("component") == "lockheed"]


@pytest.mark.lockheed_kube
@pytest.mark.parametrize("kind", [ConfigMapLocker, LeaseLocker])
def test_events_on_forced_takeover_and_on_loss(
    api: Api, kind: type[Any], lockheed_namespace: str, lockheed_kubeconfig: Path
) -> None:
    made = [kind(lockheed_namespace, config=lockheed_kubeconfig) for _ in range(2)]
    emitters = []
    locks = []
    for locker in made:
        target = locker if api.runner is None else api.twin(locker)
        emitters.append(lockheed.metrics.enable_events(target))
        assert lockheed.metrics.enable_events(target) is emitters[-1]
        locks.append(api.lock("e", locker).with_duration(30))
    holder, taker = locks
    holder.acquire()
    taker.with_force(acquired(True)).acquire()
    with pytest.raises(LockLost):
        holder.renew()
    for emitter in emitters:
        assert emitter.flush(WAIT)
    events = {e["reason"]: e for e in events_in(lockheed_namespace, lockheed_kubeconfig)}
    assert sorted(events) == ["LockLost", "LockTakenOver"]
    objects = KubeAPI(
        "configmaps" if kind is ConfigMapLocker else "leases",
        lockheed_namespace,
        config=lockheed_kubeconfig,
        api_path="/api/v1" if kind is ConfigMapLocker else "/apis/coordination.k8s.io/v1",
    )
    uid = objects.request("GET", "/lockheed-e")[1]["metadata"]["uid"]
    objects.close()
    for event in events.values():
        assert event["type"] == "Warning"
        assert event["involvedObject"] == {
            "apiVersion": "v1" if kind is ConfigMapLocker else "coordination.k8s.io/v1",
            "kind": made[0].kind,
            "name": "lockheed-e",
            "namespace": lockheed_namespace,
            "uid": uid,
        }
    taken = events["LockTakenOver"]["message"]
    assert taker.instance_id in taken and holder.instance_id in taken
    lost = events["LockLost"]["message"]
    assert holder.instance_id in lost and "taken_over" in lost
    taker.release()
    for locker in made:
        lockheed.metrics.disable_events(locker if api.runner is None else api.twin(locker))
        locker.close()


def _role_rules(with_events: bool) -> list[dict[str, Any]]:
    """deploy/rbac.yaml's Role rules, and its commented optional Events rule."""
    text = RBAC_FILE.read_text()
    rules: list[dict[str, Any]] = next(
        doc for doc in yaml.safe_load_all(text) if doc["kind"] == "Role"
    )["rules"]
    if with_events:
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("  # - apiGroups"))
        block = [lines[start]]
        block += [line for line in lines[start + 1 : start + 3] if line.startswith("  #   ")]
        optional = yaml.safe_load("\n".join(line.replace("#", "", 1) for line in block))
        assert optional == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
        rules = [*rules, *optional]
    return rules


@pytest.mark.lockheed_kube
@pytest.mark.parametrize("with_events", [False, True], ids=["rbac", "rbac+events"])
def test_a_user_without_events_create_still_gets_its_lock(
    with_events: bool,
    lockheed_restricted_user: RestrictedUserFactory,
    configmap_locker: ConfigMapLockers,
    lockheed_namespace: str,
    lockheed_kubeconfig: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Under deploy/rbac.yaml's rules a locker with Events enabled takes a lock
    over, holds it, loses it and releases it as without Events; each Event it
    could not create is logged. With the file's optional rule uncommented, the
    same user creates them."""
    user = configmap_locker(lockheed_restricted_user(_role_rules(with_events)))
    emitter = lockheed.metrics.enable_events(user)
    other = Lock("reindex", configmap_locker()).with_duration(30)
    other.acquire()
    lost = threading.Event()
    mine = Lock("reindex", user).with_duration(30).with_force(acquired(True))
    mine.on_lost(lambda error: lost.set())
    with caplog.at_level(logging.WARNING, logger="lockheed"):
        token = mine.acquire()  # takes it over: an Event
        assert mine.held and token == mine.fencing_token
        with pytest.raises(LockLost):
            other.renew()
        mine.renew()
        other.with_force(acquired(True)).acquire()
        with pytest.raises(LockLost):
            mine.renew()  # lost: an Event
        assert lost.is_set()
        assert emitter.flush(WAIT)
    with pytest.raises(LockLost):
        mine.release()
    other.release()
    failed = [r.getMessage() for r in caplog.records if "not created" in r.getMessage()]
    created = sorted(e["reason"] for e in events_in(lockheed_namespace, lockheed_kubeconfig))
    if with_events:
        assert failed == []
        assert created == ["LockLost", "LockTakenOver"]
    else:
        assert len(failed) == 2 and all("events" in m for m in failed), failed
        assert created == []
    lockheed.metrics.disable_events(user)
    assert isinstance(emitter, KubeEvents)
    assert _observe.attached(user) == ()


@pytest.mark.lockheed_kube
def test_events_queued_at_exit_are_still_created(
    lockheed_namespace: str, lockheed_kubeconfig: Path
) -> None:
    """A process that loses its lock and exits at once, without waiting for its
    Events, still leaves the LockLost Event behind."""
    script = textwrap.dedent(
        """
        import sys
        import lockheed.metrics
        from lockheed import ConfigMapLocker, Lock, LockLost, acquired

        namespace, kubeconfig = sys.argv[1:]
        mine = ConfigMapLocker(namespace, config=kubeconfig)
        lockheed.metrics.enable_events(mine)
        lock = Lock("exit", mine).with_duration(30)
        lock.acquire()
        Lock("exit", ConfigMapLocker(namespace, config=kubeconfig)).with_force(
            acquired(True)
        ).acquire()
        try:
            lock.renew()
        except LockLost:
            print(lock.instance_id)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, lockheed_namespace, str(lockheed_kubeconfig)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    instance = out.stdout.strip()
    assert instance, out.stderr
    events = events_in(lockheed_namespace, lockheed_kubeconfig)
    assert [e["reason"] for e in events] == ["LockLost"]
    assert instance in events[0]["message"]
