"""Fixtures of the reliability suite: lockheed's public API under injected faults,
on the real control plane (see lockheed.testing's FaultProxy, ControlPlane
restarts and throttled)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from child_output import Child, Lines
from fault_support import Spawn
from lockheed.testing import Cluster, ControlPlane

WORKER = Path(__file__).parent.parent / "fault_worker.py"


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start ``fault_worker.py`` with arguments; every worker is killed at the end."""
    workers: list[Child] = []

    def start(args: Sequence[str]) -> Child:
        stderr_path = tmp_path / f"worker-{len(workers)}.stderr"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, str(WORKER), *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        assert process.stdout is not None
        worker = Child(process, Lines(process.stdout), stderr_path)
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()  # SIGKILL ends a stopped process as well
        for worker in workers:
            worker.process.wait(30)
            worker.out.close()


@pytest.fixture
def same_clock(kube_cluster: Cluster) -> bool:
    """Whether the API server's clock is this host's (a local control plane), so
    lease expiries can be compared with ``time.time()``."""
    return isinstance(kube_cluster, ControlPlane)


@pytest.fixture
def background() -> Iterator[Callable[..., Future[Any]]]:
    """``background(fn, *args)`` runs a blocking call on a thread; the test
    collects its outcome with ``.result(timeout)``."""
    with ThreadPoolExecutor(4, thread_name_prefix="test-background") as pool:
        yield pool.submit
