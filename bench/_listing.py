"""Figure 6: listing locks with a condition, against kubectl on the same server.

One namespace is filled once per run, in steps (100, then up to 1,000, then up
to 10,000 lock ConfigMaps), by concurrent POSTs from one asyncio client. Every
object is in Go lockheed's format; one in ten carries the tag ``nightly`` and
one in three is held. At each step:

* ``list_locks(locker, tags_contain("nightly"))`` (and ``alist_locks``) on a
  connected locker: one paginated LIST with the label selector
  ``lockheed/lock``, then decoding and filtering;
* ``python -m lockheed list --tag nightly --json``: the same from a fresh
  process, which is what kubectl is;
* ``kubectl get configmaps -l lockheed/lock -o json`` (kubectl built from the
  server's own release; discovery cache warmed once, not timed).

Each is timed over repeats (median), and one run of each is counted by the
server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._cluster import BenchCluster
from ._metrics import Meter
from ._results import Listing, NotMeasured, Requests

__all__ = ["fill", "listing"]

TAG = "nightly"
CONCURRENCY = 32
TIMEOUT = 300.0


def _configmap(i: int) -> dict[str, Any]:
    name = f"bench-{i:05d}"
    tags = [f"group-{i % 7}"] + ([TAG] if i % 10 == 0 else [])
    leases = {}
    if i % 3 == 0:
        leases["bench-holder"] = {"instanceID": "bench-holder", "expires": "9999-12-31T23:59:59Z"}
    state = {"name": name, "lockType": "mutex", "leases": leases, "tags": tags}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"lockheed-{name}", "labels": {"lockheed/lock": ""}},
        "data": {"lock": json.dumps(state, separators=(",", ":"))},
    }


def expected_matches(n: int) -> int:
    return len([i for i in range(n) if i % 10 == 0])


async def _fill(client: Any, namespace: str, start: int, stop: int) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    gate = asyncio.Semaphore(CONCURRENCY)

    async def create(i: int) -> None:
        async with gate:
            resp = await client.post(path, json=_configmap(i))
            if resp.status_code not in (201, 409):
                raise RuntimeError(f"POST {path}: HTTP {resp.status_code} {resp.text[:200]}")

    async with client:
        await asyncio.gather(*(create(i) for i in range(start, stop)))


def fill(cluster: BenchCluster, namespace: str, start: int, stop: int) -> float:
    """Create lock objects ``start``..``stop-1``; return the seconds it took."""
    began = time.monotonic()
    asyncio.run(asyncio.wait_for(_fill(cluster.async_http(), namespace, start, stop), TIMEOUT))
    return time.monotonic() - began


def _timed(repeats: int, action: Callable[[], object]) -> tuple[float, ...]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return tuple(samples)


def _run(command: list[str], expect: Callable[[bytes], None]) -> Callable[[], None]:
    def action() -> None:
        done = subprocess.run(command, capture_output=True, timeout=TIMEOUT, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} exited {done.returncode}: {done.stderr[-500:]!r}")
        expect(done.stdout)

    return action


def listing(
    cluster: BenchCluster,
    meter: Meter,
    sizes: tuple[int, ...],
    repeats: int,
    kubectl: Path | NotMeasured,
    progress: Callable[[str], None],
) -> list[Listing]:
    from lockheed import (
        AsyncConfigMapLocker,
        ConfigMapLocker,
        alist_locks,
        list_locks,
        tags_contain,
    )

    namespace = cluster.namespace("list")
    kubeconfig = str(cluster.kubeconfig)
    locker = ConfigMapLocker(namespace, config=kubeconfig)
    where = tags_contain(TAG)
    out: list[Listing] = []
    made = 0
    with tempfile.TemporaryDirectory(prefix="lockheed-bench-kubectl-") as cache:
        for n in sorted(sizes):
            seconds = fill(cluster, namespace, made, n)
            progress(f"created {n - made} lock ConfigMaps in {seconds:.1f}s ({n} in all)")
            made = n
            want = expected_matches(n)

            def lockheed_list(want: int = want) -> None:
                found = list_locks(locker, where)
                if len(found) != want:
                    raise RuntimeError(f"list_locks found {len(found)} locks, expected {want}")

            async def async_list(k: int, want: int) -> tuple[float, ...]:
                alocker = AsyncConfigMapLocker(namespace, config=kubeconfig)
                try:
                    await alist_locks(alocker, where)  # connect
                    samples = []
                    for _ in range(k):
                        start = time.perf_counter()
                        found = await alist_locks(alocker, where)
                        samples.append(time.perf_counter() - start)
                        if len(found) != want:
                            raise RuntimeError(f"alist_locks found {len(found)}, expected {want}")
                    return tuple(samples)
                finally:
                    await alocker.aclose()

            def check_cli(stdout: bytes, want: int = want) -> None:
                found = json.loads(stdout)
                if len(found) != want:
                    raise RuntimeError(f"lockheed list printed {len(found)} locks, expected {want}")

            def check_kubectl(stdout: bytes, n: int = n) -> None:
                items = json.loads(stdout).get("items") or []
                if len(items) != n:
                    raise RuntimeError(f"kubectl printed {len(items)} ConfigMaps, expected {n}")

            lockheed_list()  # warm
            timed = _timed(repeats, lockheed_list)
            with meter.batch() as counted:
                lockheed_list()
            async_timed = asyncio.run(async_list(repeats, want))
            cli = [sys.executable, "-m", "lockheed", "list", "--kubeconfig", kubeconfig]
            cli += ["-n", namespace, "--tag", TAG, "--json"]
            cli_timed = _timed(repeats, _run(cli, check_cli))
            kubectl_timed: tuple[float, ...] | NotMeasured
            kubectl_requests: Requests | None = None
            if isinstance(kubectl, NotMeasured):
                kubectl_timed = kubectl
            else:
                command = [str(kubectl), "--kubeconfig", kubeconfig, "--cache-dir", cache]
                command += ["get", "configmaps", "-n", namespace, "-l", "lockheed/lock", "-o"]
                command += ["json"]
                run_kubectl = _run(command, check_kubectl)
                run_kubectl()  # warm the discovery cache
                kubectl_timed = _timed(repeats, run_kubectl)
                with meter.batch() as kubectl_counted:
                    run_kubectl()
                kubectl_requests = kubectl_counted.requests
            out.append(
                Listing(
                    locks=n,
                    matched=want,
                    lockheed=timed,
                    lockheed_async=async_timed,
                    cli=cli_timed,
                    kubectl=kubectl_timed,
                    lockheed_requests=counted.requests,
                    kubectl_requests=kubectl_requests,
                )
            )
    locker.close()
    return out
