"""Request counts as the API server itself counts them, from its ``/metrics``.

A :class:`Meter` scrapes ``apiserver_request_total`` and keeps, for the
resources of interest (``configmaps``, ``leases``), the sum over response codes
by verb (``GET``, ``LIST``, ``POST``, ``PUT``, ``DELETE``, ``WATCH``...). A batch
of operations is measured as the difference between a scrape before and a
scrape after it. The API server counts a long-running request (a WATCH) when it
ends, so the scrape after a batch waits until the open watches of those
resources are back to what they were before and two scrapes in a row agree
(bounded in time). The scrape itself is a non-resource request and is not
counted. Requests the server makes on its own are measured on the idle server
(:meth:`Meter.measure_background`) and subtracted per second of each batch.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ._results import Requests

__all__ = ["Batch", "Meter", "Snapshot"]

RESOURCES = ("configmaps", "leases")
_REQUESTS = "apiserver_request_total{"
_LONGRUNNING = "apiserver_longrunning_requests{"
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_SETTLE_TIMEOUT = 5.0
_SETTLE_POLL = 0.05


@dataclass(frozen=True)
class Snapshot:
    at: float  # monotonic
    counts: dict[str, float]
    watches: float  # open WATCH requests on RESOURCES


@dataclass
class Batch:
    before: Snapshot
    after: Snapshot | None = None
    requests: Requests = field(default_factory=Requests)


class Meter:
    """Scrapes ``/metrics`` with ``http`` (an httpx2 client with read access to it)."""

    def __init__(self, http: Any, resources: tuple[str, ...] = RESOURCES):
        self.http = http
        self.resources = resources
        self.background: dict[str, float] = {}  # requests per second on the idle server
        self.scrapes = 0

    def snapshot(self) -> Snapshot:
        resp = self.http.get("/metrics")
        if resp.status_code != 200:
            raise RuntimeError(
                f"cannot read the API server's /metrics: HTTP {resp.status_code} "
                f"{resp.text[:200]!r} (the benchmark needs a kubeconfig allowed to read it)"
            )
        self.scrapes += 1
        counts: dict[str, float] = {}
        watches = 0.0
        seen = False
        for line in resp.text.splitlines():
            if line.startswith(_REQUESTS):
                seen = True
                labels = dict(_LABEL.findall(line))
                resource = labels.get("resource", "")
                if resource in self.resources and not labels.get("dry_run"):
                    key = f"{resource} {labels.get('verb', '?')}"
                    counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
            elif line.startswith(_LONGRUNNING):
                labels = dict(_LABEL.findall(line))
                if labels.get("resource") in self.resources and labels.get("verb") == "WATCH":
                    watches += float(line.rsplit(" ", 1)[1])
        if not seen:
            raise RuntimeError("the API server's /metrics has no apiserver_request_total")
        return Snapshot(time.monotonic(), counts, watches)

    def settle(self, before: Snapshot, timeout: float = _SETTLE_TIMEOUT) -> Snapshot:
        """A scrape taken once the batch's watches have ended and the counts are still."""
        deadline = time.monotonic() + timeout
        previous: Snapshot | None = None
        while True:
            current = self.snapshot()
            quiet = current.watches <= before.watches
            if quiet and previous is not None and previous.counts == current.counts:
                return current
            if time.monotonic() > deadline:
                return current
            previous = current
            time.sleep(_SETTLE_POLL)

    def diff(self, before: Snapshot, after: Snapshot) -> Requests:
        """Requests between two scrapes, less the idle server's own."""
        seconds = max(0.0, after.at - before.at)
        out: dict[str, float] = {}
        for key in set(before.counts) | set(after.counts):
            n = after.counts.get(key, 0.0) - before.counts.get(key, 0.0)
            n -= self.background.get(key, 0.0) * seconds
            if n > 0.005:
                out[key] = n
        return Requests(out)

    @contextlib.contextmanager
    def batch(self) -> Iterator[Batch]:
        """``with meter.batch() as b: ...``; then ``b.requests`` holds the batch's requests."""
        batch = Batch(self.snapshot())
        yield batch
        batch.after = self.settle(batch.before)
        batch.requests = self.diff(batch.before, batch.after)

    def measure_background(self, seconds: float) -> Requests:
        """Requests per second the idle server makes on its own; subtracted from now on."""
        before = self.snapshot()
        time.sleep(seconds)
        after = self.snapshot()
        elapsed = max(1e-3, after.at - before.at)
        rates = {
            key: (after.counts.get(key, 0.0) - before.counts.get(key, 0.0)) / elapsed
            for key in after.counts
        }
        self.background = {k: v for k, v in rates.items() if v > 0}
        return Requests(dict(self.background))
