"""Fixtures of the reliability suite: lockheed's public API under injected faults,
on the real control plane (see lockheed.testing's FaultProxy, ControlPlane
restarts and throttled)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from child_output import python_children
from fault_support import Spawn
from lockheed.testing import Cluster, ControlPlane

WORKER = Path(__file__).parent.parent / "fault_worker.py"


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start ``fault_worker.py`` with arguments; every worker is killed at the end."""
    with python_children(WORKER, tmp_path) as start:
        yield start


@pytest.fixture
def same_clock(lockheed_cluster: Cluster) -> bool:
    """Whether the API server's clock is this host's (a local control plane), so
    lease expiries can be compared with ``time.time()``."""
    return isinstance(lockheed_cluster, ControlPlane)


@pytest.fixture
def background() -> Iterator[Callable[..., Future[Any]]]:
    """``background(fn, *args)`` runs a blocking call on a thread; the test
    collects its outcome with ``.result(timeout)``."""
    with ThreadPoolExecutor(4, thread_name_prefix="test-background") as pool:
        yield pool.submit
