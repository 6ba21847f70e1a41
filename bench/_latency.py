"""Figures 2 and 3: uncontended cycle latency, hand-off latency, and the API
server's own single PUT as the reference for both.

* Cycle: one lock object acquires and releases in a loop (after a short
  warm-up); each sample is one acquire+release, on ``time.perf_counter()``.
* Hand-off: see :func:`bench._systems.thread_handoffs` (a task instead of a
  thread for asyncio); the sample runs from the holder's release returning to
  the blocked waiter's acquire returning, both stamped with
  ``time.monotonic()`` in the same process.
* Reference: a raw PUT of one small ConfigMap at its current resourceVersion
  (what a lock write is), over a kept-alive connection of the same HTTP client
  lockheed uses (httpx2), so the ratio shows what lockheed adds to the server.
"""

from __future__ import annotations

import time
from typing import Any

from ._results import Latency

__all__ = ["raw_put"]


def raw_put(http: Any, namespace: str, n: int, name: str = "raw-put") -> Latency:
    """``n`` PUTs (after 5 for warm-up) of a new ConfigMap ``name``."""
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"n": "0"},
    }
    resp = http.post(base, json=body)
    if resp.status_code != 201:
        raise RuntimeError(f"POST configmap: HTTP {resp.status_code} {resp.text[:200]}")
    current = resp.json()
    samples = []
    for i in range(n + 5):
        current["data"] = {"n": str(i)}
        start = time.perf_counter()
        resp = http.put(f"{base}/{name}", json=current)
        elapsed = time.perf_counter() - start
        if resp.status_code != 200:
            raise RuntimeError(f"PUT configmap: HTTP {resp.status_code} {resp.text[:200]}")
        current = resp.json()
        if i >= 5:  # the first few warm up the connection and the server's caches
            samples.append(elapsed)
    return Latency(tuple(samples), "raw PUT, httpx2, kept-alive connection")
