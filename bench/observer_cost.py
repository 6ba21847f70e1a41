"""``python -m bench.observer_cost``: what metrics cost a lock, off and on.

Prints the cost of the check every call site makes when nothing is enabled,
and the time of an acquire + release cycle with metrics off and on (in
memory, and on a ConfigMap of a local control plane, or of ``--kubeconfig``'s
cluster), in alternating blocks so that a change of load hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

import lockheed.metrics
from lockheed import ConfigMapLocker, Lock, MemoryLocker, _observe

from ._cluster import BenchCluster


def _cycles(lock: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        lock.acquire()
        lock.release()
        out.append(time.perf_counter() - start)
    return out


def _off_on(locker: Any, blocks: int, per_block: int) -> tuple[float, float]:
    """Median cycle (seconds) with metrics off and on, in alternating blocks."""
    lock = Lock("cost", locker).with_duration(30)
    lock.acquire()  # the object exists before the measurement
    lock.release()
    off: list[float] = []
    on: list[float] = []
    registry = CollectorRegistry()
    for _ in range(blocks):
        lockheed.metrics.disable(locker)
        off += _cycles(lock, per_block)
        lockheed.metrics.enable(registry, locker=locker)
        on += _cycles(lock, per_block)
    lockheed.metrics.disable(locker)
    return statistics.median(off), statistics.median(on)


def _line(what: str, off: float, on: float, unit: Callable[[float], str]) -> None:
    print(f"{what:<34} {unit(off):>10} {unit(on):>10} {100 * (on - off) / off:>+7.1f} %")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.observer_cost", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, help="use this cluster instead of starting one")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--per-block", type=int, default=50)
    args = parser.parse_args(argv)

    store = MemoryLocker()
    n = 200_000
    check = min(timeit.repeat(lambda: _observe.of(store), number=n, repeat=5)) / n
    print(f"the check at a call site, nothing enabled: {check * 1e9:.0f} ns")
    print(f"{'acquire + release, median':<34} {'off':>10} {'on':>10} {'change':>9}")
    us = lambda s: f"{s * 1e6:.1f} us"  # noqa: E731
    ms = lambda s: f"{s * 1e3:.2f} ms"  # noqa: E731
    _line("MemoryLocker", *_off_on(store, args.blocks, args.per_block * 10), us)
    cluster = BenchCluster(args.kubeconfig).start()
    try:
        locker = ConfigMapLocker(cluster.namespace("observer-cost"), config=cluster.kubeconfig)
        _line("ConfigMapLocker", *_off_on(locker, args.blocks, args.per_block), ms)
        locker.close()
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
