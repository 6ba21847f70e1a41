"""Hosts whose wall clocks are an hour off, on the holder's and on the contender's side.

Expiry is written and judged on the API server's clock, so the offset must not
matter: the holder writes an expiry in server time, the contender neither
steals the live lease nor waits an hour, and takes the lock only after the
last lease ran out.
"""

from __future__ import annotations

import threading
import time

import pytest

from fault_support import Traffic, async_locker, history, last_expiry
from lockheed import LockTimeout
from lockheed._clock import ServerClock
from lockheed.testing import Cluster
from support import Api, ConfigMapLockers

HOUR = 3600.0
DURATION = 4.0
SLACK = 60.0  # far below an hour, far above any scheduling delay


def _skewed(offset: float) -> ServerClock:
    return ServerClock(wall=lambda: time.time() + offset)


@pytest.mark.parametrize(
    ("holder_offset", "contender_offset"), [(HOUR, -HOUR), (-HOUR, HOUR)], ids=["ahead", "behind"]
)
def test_an_hour_of_clock_offset_does_not_matter(
    api: Api,
    configmap_locker: ConfigMapLockers,
    lockheed_cluster: Cluster,
    lockheed_namespace: str,
    same_clock: bool,
    holder_offset: float,
    contender_offset: float,
) -> None:
    stop = threading.Event()
    holder = api.lock("clocks", configmap_locker(clock=_skewed(holder_offset)))
    holder.with_duration(DURATION).with_renew_interval(1).with_stop(stop)
    before = time.time()
    token = holder.acquire(timeout=30)
    after = time.time()
    expires = holder.expires_at.timestamp()
    if same_clock:  # written in the server's time, not the holder's
        assert before + DURATION <= expires <= after + DURATION + SLACK

    contender_locker = configmap_locker(clock=_skewed(contender_offset))
    traffic = Traffic(async_locker(api, contender_locker))
    contender = api.lock("clocks", contender_locker).with_duration(30)
    with pytest.raises(LockTimeout) as busy:
        contender.acquire(blocking=False)  # a live lease, renewed
    assert busy.value.holder == holder.instance_id

    stop.set()  # the holder stops renewing: its lease runs out
    new_token = contender.acquire(timeout=DURATION + SLACK)
    _, write_wall = traffic.last_write
    assert new_token > token
    if same_clock:
        versions = history(lockheed_cluster, lockheed_namespace, "clocks", str(token - 1))
        assert write_wall > last_expiry(versions, holder.instance_id).timestamp()
    contender.release()
