"""Waiters and holders through blips, API-server restarts and 429s.

A blocking ``acquire(timeout=...)`` rides out transient failures until its
timeout and gets the lock once it is free; a holder whose renewals fail for
less than its lease keeps the lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from fault_support import Events, Traffic, async_locker
from lockheed import EventCode, Lock
from lockheed.testing import Cluster, ControlPlane, FaultProxy, Refuse, Reset, throttled
from lockheed.testing.plugin import RestrictedUserFactory
from support import Api, ConfigMapLockers, LoopThread

BLIP = 1.5  # seconds the API server is unreachable through the proxy
LOCKER_RULES = [
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "update", "watch"]}
]


def _waiting(traffic: Traffic) -> None:
    traffic.wait("watch by the waiter", lambda t: t.sent["watch"] >= 1)


def test_waiter_rides_out_a_blip(
    api: Api,
    lockheed_fault_proxy: FaultProxy,
    configmap_locker: ConfigMapLockers,
    background: Callable[..., Future[Any]],
) -> None:
    """The waiter's connections are reset and new ones refused while the holder
    releases: the waiter must read again once it can, and take the lock."""
    holder = Lock("blip", configmap_locker()).with_duration(30)
    holder_token = holder.acquire(timeout=30)
    proxied = configmap_locker(lockheed_fault_proxy.kubeconfig())
    waiter = api.lock("blip", proxied).with_duration(30)
    traffic = Traffic(async_locker(api, proxied))
    waiting = background(waiter.acquire, True, 60)
    _waiting(traffic)

    with lockheed_fault_proxy.fault(Reset(), Refuse()) as run:
        holder.release()
        time.sleep(BLIP)  # the length of the blip, not a synchronisation
    assert run.injected >= 2  # the waiter's watch was reset, and the listener closed

    assert waiting.result(60) > holder_token
    assert waiter.held
    waiter.release()


@pytest.fixture
def async_api(loop_thread: LoopThread) -> Iterator[Api]:
    made = Api("async", loop_thread)
    yield made
    made.close()


@pytest.mark.timeout(300)
def test_holder_and_waiter_ride_out_an_apiserver_restart(
    lockheed_control_plane: ControlPlane,
    configmap_locker: ConfigMapLockers,
    async_api: Api,
    background: Callable[..., Future[Any]],
) -> None:
    """A sync holder with a minute's lease keeps it across the restart; an asyncio
    waiter keeps waiting through it and takes the lock once it is released."""
    events = Events()
    holder = Lock("restart", configmap_locker()).with_duration(60).with_renew_interval(2)
    holder.with_event_handler(events)
    holder_token = holder.acquire(timeout=30)
    waiter_locker = configmap_locker()
    waiter = async_api.lock("restart", waiter_locker).with_duration(30)
    traffic = Traffic(async_api.twin(waiter_locker))
    waiting = background(waiter.acquire, True, 180)
    _waiting(traffic)

    lockheed_control_plane.restart_apiserver()
    restarted = time.monotonic()
    events.wait(
        "a renewal after the restart", lambda: events.count(EventCode.RENEW_OK, restarted) > 0
    )
    assert holder.held and holder.lost is None
    holder.release()

    assert waiting.result(60) > holder_token
    waiter.release()


def test_holder_rides_out_429(
    lockheed_cluster: Cluster,
    lockheed_restricted_user: RestrictedUserFactory,
    configmap_locker: ConfigMapLockers,
) -> None:
    user = lockheed_restricted_user(LOCKER_RULES, name="throttled-holder")
    locker = configmap_locker(user)
    traffic = Traffic(locker)
    events = Events()
    holder = Lock("throttled", locker).with_duration(10).with_renew_interval(1)
    holder.with_event_handler(events)
    holder.acquire(timeout=30)

    with throttled(lockheed_cluster, user):
        traffic.wait("two renewals answered 429", lambda t: t.statuses[429] >= 2)
    ended = time.monotonic()
    events.wait(
        "a renewal after the throttling", lambda: events.count(EventCode.RENEW_OK, ended) > 0
    )
    assert holder.held and holder.lost is None
    holder.release()


def test_waiter_rides_out_429(
    lockheed_cluster: Cluster,
    lockheed_restricted_user: RestrictedUserFactory,
    configmap_locker: ConfigMapLockers,
    background: Callable[..., Future[Any]],
) -> None:
    holder = Lock("throttled", configmap_locker()).with_duration(30)
    holder_token = holder.acquire(timeout=30)
    user = lockheed_restricted_user(LOCKER_RULES, name="throttled-waiter")
    waiter_locker = configmap_locker(user)
    traffic = Traffic(waiter_locker)
    waiter = Lock("throttled", waiter_locker).with_duration(30)
    waiting = background(waiter.acquire, True, 60)
    _waiting(traffic)

    with throttled(lockheed_cluster, user):
        holder.release()  # the waiter's watch sees it; its write is answered 429
        traffic.wait("a 429 for the waiter", lambda t: t.statuses[429] >= 1)

    assert waiting.result(60) > holder_token
    waiter.release()
