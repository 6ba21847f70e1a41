"""Holders that stop, die, go silent or slow down.

Safety, as a user sees it: a holder declares the loss (``held`` False,
``on_lost``) before anyone else's write can make them the holder, and the next
holder gets the lock only after the last lease the old one wrote ran out.
Liveness: slow answers or one slow lock do not cost a healthy holder its lock.

Times are compared on CLOCK_MONOTONIC, which every process of the host shares;
lease expiries (server time) are compared with ``time.time()`` only when the
API server runs on this host (``same_clock``).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from fault_support import (
    STARTUP_TIMEOUT,
    Events,
    Spawn,
    Traffic,
    UnexpectedOnce,
    async_locker,
    history,
    last_expiry,
    record,
    wait_until,
    worker_args,
)
from lockheed import EventCode, Lock, LockLost
from lockheed._clock import ServerClock
from lockheed.testing import Blackhole, Cluster, FaultProxy, Latency
from support import Api, ConfigMapLockers

DURATION = 6.0  # in-process holders: a loss margin of 0.6 s
RENEW = 1.0
PROCESS_DURATION = 4.0


def _stop(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)
    _, status = os.waitpid(pid, os.WUNTRACED)  # returns once it is stopped (does not reap)
    assert os.WIFSTOPPED(status)


# ---------------------------------------------------------------- processes


@pytest.mark.parametrize("holder_api", ["sync", "async"])
def test_paused_holder_never_believes_it_holds_after_the_takeover(
    spawn: Spawn,
    lockheed_namespace: str,
    lockheed_kubeconfig: Path,
    lockheed_cluster: Cluster,
    configmap_locker: ConfigMapLockers,
    same_clock: bool,
    holder_api: str,
) -> None:
    holder = spawn(
        [
            "hold",
            *worker_args(lockheed_namespace, lockheed_kubeconfig, "paused"),
            *("--duration", str(PROCESS_DURATION), "--renew-interval", str(RENEW)),
            *("--api", holder_api),
        ]
    )
    _, token, holder_id = holder.out.expect("HELD", STARTUP_TIMEOUT).split()
    contender_locker = configmap_locker()
    traffic = Traffic(contender_locker)
    contender = Lock("paused", contender_locker).with_duration(30)

    _stop(holder.pid)
    new_token = contender.acquire(timeout=PROCESS_DURATION + 30)
    write_mono, write_wall = traffic.last_write
    os.kill(holder.pid, signal.SIGCONT)

    holder.out.expect("LOST", 30)
    released = holder.out.expect("RELEASE", 30)
    assert holder.process.wait(30) == 0, holder.describe()
    assert released.startswith("RELEASE-RAISED LockLost"), holder.describe()
    checks = [line.split() for line in holder.out.seen if line.startswith("CHECK")]
    believed = [int(t) / 1e9 for _, t, ok in checks if ok == "1"]
    doubted = [int(t) / 1e9 for _, t, ok in checks if ok == "0"]
    assert believed, holder.describe()
    assert max(believed) < write_mono, "the paused holder believed it held the lock after B took it"
    assert max(doubted) > write_mono  # it looked again after the takeover, and knew
    assert new_token > int(token)
    if same_clock:
        versions = history(lockheed_cluster, lockheed_namespace, "paused", str(int(token) - 1))
        assert write_wall > last_expiry(versions, holder_id).timestamp()
    contender.release()


def test_killed_holder_hands_over_only_after_its_lease(
    spawn: Spawn,
    lockheed_namespace: str,
    lockheed_kubeconfig: Path,
    lockheed_cluster: Cluster,
    configmap_locker: ConfigMapLockers,
    same_clock: bool,
    request: pytest.FixtureRequest,
) -> None:
    holder = spawn(
        [
            "hold",
            *worker_args(lockheed_namespace, lockheed_kubeconfig, "killed"),
            *("--duration", str(PROCESS_DURATION), "--renew-interval", str(RENEW)),
        ]
    )
    _, token, holder_id = holder.out.expect("HELD", STARTUP_TIMEOUT).split()
    contender_locker = configmap_locker()
    traffic = Traffic(contender_locker)
    contender = Lock("killed", contender_locker).with_duration(30)

    holder.process.kill()
    holder.process.wait(30)
    killed = time.monotonic()
    new_token = contender.acquire(timeout=PROCESS_DURATION + 30)
    write_mono, write_wall = traffic.last_write

    record(request, "line_moved_s", round(write_mono - killed, 2))
    assert new_token > int(token)
    if same_clock:
        versions = history(lockheed_cluster, lockheed_namespace, "killed", str(int(token) - 1))
        assert write_wall > last_expiry(versions, holder_id).timestamp()
    contender.release()


# ---------------------------------------------------------------- silent and slow holders


@pytest.mark.parametrize("fault", ["blackhole", "slow"])
def test_silenced_holder_declares_loss_before_the_takeover(
    api: Api,
    lockheed_fault_proxy: FaultProxy,
    lockheed_cluster: Cluster,
    lockheed_namespace: str,
    configmap_locker: ConfigMapLockers,
    same_clock: bool,
    request: pytest.FixtureRequest,
    fault: str,
) -> None:
    """The holder's renewals go through the proxy; the contender's do not.

    ``slow`` answers later than the lease lasts: each renewal is stored by the
    server but confirmed too late, so the server's lease outlives the holder's
    belief, and the contender must wait for it.
    """
    holder = api.lock("silenced", configmap_locker(lockheed_fault_proxy.kubeconfig()))
    holder.with_duration(DURATION).with_renew_interval(RENEW)
    notices: list[float] = []
    holder.on_lost(lambda error: notices.append(time.monotonic()))
    token = holder.acquire(timeout=30)
    contender_locker = configmap_locker()
    traffic = Traffic(contender_locker)
    contender = Lock("silenced", contender_locker).with_duration(30)

    injected = Blackhole() if fault == "blackhole" else Latency(to_client=DURATION + 2)
    with lockheed_fault_proxy.fault(injected) as run:
        new_token = contender.acquire(timeout=DURATION * 4)
        write_mono, write_wall = traffic.last_write
        assert run.injected >= 1
        assert notices, "the holder was not told of the loss"
        assert notices[0] < write_mono, "the contender wrote before the holder knew"
        record(request, "loss_notice_margin_s", round(write_mono - notices[0], 3))
        assert not holder.held

    with pytest.raises(LockLost):
        holder.release()
    assert new_token > token
    if same_clock:
        versions = history(lockheed_cluster, lockheed_namespace, "silenced", str(token - 1))
        assert write_wall > last_expiry(versions, holder.instance_id).timestamp()
    contender.release()


def test_slow_answers_do_not_cost_a_renewed_lock(
    api: Api, lockheed_fault_proxy: FaultProxy, configmap_locker: ConfigMapLockers
) -> None:
    """Every answer takes 1.5 s, more than the renew interval: renewals are due
    from when each was sent, so the lease (4 s) is always renewed in time.
    Three renewals, each answered 1.5 s after it was sent, take the holder past
    the end of the lease it acquired."""
    events = Events()
    holder = api.lock("slow-answers", configmap_locker(lockheed_fault_proxy.kubeconfig()))
    holder.with_duration(4).with_renew_interval(1).with_event_handler(events)
    with lockheed_fault_proxy.fault(Latency(to_client=1.5)) as run:
        holder.acquire(timeout=60)
        acquired = time.monotonic()
        events.wait(
            "three renewals or a loss",
            lambda: events.count(EventCode.RENEW_OK) >= 3 or events.count(EventCode.LOST) > 0,
        )
        assert holder.lost is None, f"lost {time.monotonic() - acquired:.1f} s after acquiring"
        assert holder.held
        assert run.injected >= 5
    holder.release()


def _observe_renewals(events: Events, lock: Any, since: float, renewals: int = 4) -> None:
    """Wait until ``lock`` renewed ``renewals`` times after ``since`` (fine), or lost
    its lock or stopped believing it holds it (the failure)."""
    wait_until(
        f"{renewals} renewals of {lock.name!r}",
        lambda: events.count(EventCode.RENEW_OK, since) >= renewals or not lock.held,
    )
    assert lock.held and lock.lost is None, f"{lock.name!r} lost: {lock.lost}"


def test_slow_renewal_of_one_lock_does_not_starve_another(
    api: Api,
    lockheed_fault_proxy: FaultProxy,
    configmap_locker: ConfigMapLockers,
) -> None:
    """Both locks share the process's renewer (thread or task). One's renewal hangs
    in a blackhole for up to its request timeout; the other must still be renewed."""
    proxied = configmap_locker(lockheed_fault_proxy.kubeconfig())
    slow = api.lock("hangs", proxied).with_duration(60).with_renew_interval(RENEW)
    fast_events = Events()
    fast = api.lock("healthy", configmap_locker()).with_duration(4).with_renew_interval(RENEW)
    fast.with_event_handler(fast_events)
    slow_traffic = Traffic(async_locker(api, proxied))
    slow.acquire(timeout=30)
    fast.acquire(timeout=30)

    with lockheed_fault_proxy.fault(Blackhole()):
        writes = len(slow_traffic.writes)
        slow_traffic.wait("a renewal of the slow lock", lambda t: len(t.writes) > writes)
        _observe_renewals(fast_events, fast, since=time.monotonic())
    fast.release()
    slow.release()


def test_slow_release_does_not_hold_up_other_renewals(
    lockheed_fault_proxy: FaultProxy,
    configmap_locker: ConfigMapLockers,
    background: Callable[..., Future[Any]],
) -> None:
    proxied = configmap_locker(lockheed_fault_proxy.kubeconfig())
    slow = Lock("slow-release", proxied).with_duration(60).with_renew_interval(RENEW)
    fast_events = Events()
    fast = Lock("healthy", configmap_locker()).with_duration(4).with_renew_interval(RENEW)
    fast.with_event_handler(fast_events)
    slow_traffic = Traffic(proxied)
    slow.acquire(timeout=30)
    fast.acquire(timeout=30)

    with lockheed_fault_proxy.fault(Blackhole()):
        writes = len(slow_traffic.writes)
        releasing = background(slow.release)
        slow_traffic.wait("the release's write", lambda t: len(t.writes) > writes)
        _observe_renewals(fast_events, fast, since=time.monotonic())
    releasing.result(60)  # delivered once the blackhole ends
    fast.release()


def test_unexpected_error_in_a_renewal_is_retried(configmap_locker: ConfigMapLockers) -> None:
    """A renewal that fails with an error no locker should raise is logged and
    tried again; it does not silently end the lock's renewal."""
    locker = UnexpectedOnce(configmap_locker())
    events = Events()
    lock = Lock("unexpected", locker).with_duration(4).with_renew_interval(RENEW)
    lock.with_event_handler(events)
    lock.acquire(timeout=30)
    locker.arm()
    assert locker.raised.wait(30), "no renewal was attempted"
    _observe_renewals(events, lock, since=time.monotonic())
    lock.release()


class StallAfterReading(ServerClock):
    """A server clock whose reader, once armed, is descheduled for ``stall``
    seconds right after reading it (a busy host, a GC pause, a stopped VM)."""

    stall = 0.0

    def bounds(self) -> tuple[datetime, datetime]:
        bounds = super().bounds()
        stall, self.stall = self.stall, 0.0
        time.sleep(stall)  # the stall being simulated, not a synchronisation
        return bounds


@pytest.mark.parametrize("operation", ["acquire", "renew"])
def test_holder_stalled_before_its_write_does_not_outlive_its_lease(
    configmap_locker: ConfigMapLockers, operation: str
) -> None:
    clock = StallAfterReading()
    holder = Lock("stalled", configmap_locker(clock=clock)).with_duration(4)
    if operation == "renew":
        holder.acquire(timeout=30)
    clock.stall = 3.0  # far longer than the loss margin (0.4 s) and the clock's uncertainty
    getattr(holder, operation)()
    contender = Lock("stalled", configmap_locker()).with_duration(30)
    contender.acquire(timeout=30)
    assert not holder.held, "the holder still believes it holds the lock the contender took"
