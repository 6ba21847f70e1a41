"""Helpers for the reliability tests and the soak: what a locker sent and got on the
wire, the history of a lock object, and a locker that fails in unexpected ways."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2 as httpx

from child_output import Child
from lockheed import AsyncConfigMapLocker, ConfigMapLocker, Event, EventCode
from lockheed._codec import decode_configmap
from lockheed._core import Effect, Read, Replace
from lockheed._state import Record
from lockheed.testing import Cluster
from support import Api

if TYPE_CHECKING:
    import pytest

WAIT = 60.0  # the longest any helper waits for something that should happen
STARTUP_TIMEOUT = 60.0  # interpreter start, imports and the first request, on a busy host
Spawn = Callable[..., Child]


def _verb(request: httpx.Request) -> str:
    if "watch" in request.url.params:
        return "watch"
    return {"POST": "create", "PUT": "update"}.get(request.method, "read")


class Traffic:
    """What one locker sends and receives, from its HTTP clients' event hooks.

    ``writes`` holds ``(monotonic, wall)`` times at which each create or update
    was handed to the connection: the server committed it no earlier. Works for
    the sync and the asyncio ConfigMap locker; waits are on a condition.
    """

    def __init__(self, locker: ConfigMapLocker | AsyncConfigMapLocker):
        self.writes: list[tuple[float, float]] = []
        self.sent: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self._cond = threading.Condition()
        api = locker.api
        if isinstance(locker, AsyncConfigMapLocker):
            for client in {api.client, api.watch_client}:
                client.event_hooks["request"].append(self._arequest)
            api.client.event_hooks["response"].append(self._aresponse)
        else:
            for client in {api.client, api.watch_client}:
                client.event_hooks["request"].append(self._request)
            api.client.event_hooks["response"].append(self._response)

    def _request(self, request: httpx.Request) -> None:
        verb = _verb(request)
        with self._cond:
            if verb in ("create", "update"):
                self.writes.append((time.monotonic(), time.time()))
            self.sent[verb] += 1
            self._cond.notify_all()

    def _response(self, response: httpx.Response) -> None:
        with self._cond:
            self.statuses[response.status_code] += 1
            self._cond.notify_all()

    async def _arequest(self, request: httpx.Request) -> None:
        self._request(request)

    async def _aresponse(self, response: httpx.Response) -> None:
        self._response(response)

    def wait(self, what: str, done: Callable[[Traffic], bool], timeout: float = WAIT) -> None:
        """Wait until ``done(self)``; fail the test, naming ``what``, after ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: done(self), timeout):
                raise AssertionError(
                    f"no {what} within {timeout} s: sent {dict(self.sent)}, got {self.statuses}"
                )

    @property
    def last_write(self) -> tuple[float, float]:
        with self._cond:
            assert self.writes, "no write was sent"
            return self.writes[-1]


def history(cluster: Cluster, namespace: str, lock: str, since: str) -> list[Record]:
    """Every version of ``lock``'s ConfigMap written after resourceVersion ``since``,
    in order, replayed by a watch from that version."""
    params = {
        "watch": "1",
        "fieldSelector": f"metadata.name=lockheed-{lock}",
        "resourceVersion": since,
        "timeoutSeconds": "1",
    }
    records = []
    with (
        cluster.http_client() as http,
        http.stream("GET", f"/api/v1/namespaces/{namespace}/configmaps", params=params) as resp,
    ):
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if not line:
                continue
            event = json.loads(line)
            assert event["type"] != "ERROR", event
            if event["type"] in ("ADDED", "MODIFIED"):
                records.append(decode_configmap(lock, event["object"]))
    return records


def last_expiry(records: list[Record], instance_id: str) -> datetime:
    """The latest expiry ever written for ``instance_id``'s lease in ``records``."""
    expiries = [
        r.state.leases[instance_id].expires
        for r in records
        if r.state is not None and instance_id in r.state.leases
    ]
    assert expiries, f"{instance_id} never held the lock in {len(records)} versions"
    return max(expiries)


class UnexpectedOnce:
    """Delegates to a sync locker, but the first update after :meth:`arm` raises
    an error no locker is meant to raise (a bug, or an unforeseen library error)."""

    def __init__(self, inner: ConfigMapLocker):
        self.inner = inner
        self.prefix = inner.prefix
        self.clock = inner.clock
        self.raised = threading.Event()
        self._armed = False

    def arm(self) -> None:
        self._armed = True

    def object_name(self, name: str) -> str:
        return self.inner.object_name(name)

    def execute(self, effect: Effect) -> Any:
        if self._armed and isinstance(effect, Replace):
            self._armed = False
            self.raised.set()
            raise RuntimeError("unexpected failure inside the locker (injected)")
        return self.inner.execute(effect)

    def list_records(self) -> Any:
        return self.inner.list_records()


def record(request: pytest.FixtureRequest, key: str, value: object) -> None:
    """Attach a figure to the test's report (see test_processes.record)."""
    request.node.user_properties.append((key, value))


def worker_args(namespace: str, kubeconfig: Path, lock: str) -> list[str]:
    return ["--kubeconfig", str(kubeconfig), "--namespace", namespace, "--lock", lock]


def async_locker(api: Api, locker: ConfigMapLocker) -> Any:
    """The locker that ``api``'s locks use for ``locker``'s store (itself, or its async twin)."""
    return locker if api.runner is None else api.twin(locker)


def warm(api: Api, locker: ConfigMapLocker, name: str) -> None:
    """Open ``api``'s connection for ``locker`` with a read, so a fault acting on open
    connections (DropResponse) meets the lock's next request."""
    if api.runner is None:
        locker.execute(Read(name))
    else:
        api.runner.run(api.twin(locker).execute(Read(name)))


class Events:
    """A lock's events, collected from its handler; waits are on a condition."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, Event]] = []
        self._cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._cond:
            self.seen.append((time.monotonic(), event))
            self._cond.notify_all()

    def count(self, code: EventCode, since: float = 0.0) -> int:
        with self._cond:
            return sum(1 for t, e in self.seen if e.code == code and t >= since)

    def wait(self, what: str, done: Callable[[], bool], timeout: float = WAIT) -> None:
        with self._cond:
            if not self._cond.wait_for(done, timeout):
                codes = [int(e.code) for _, e in self.seen]
                raise AssertionError(f"no {what} within {timeout} s; events {codes}")


def wait_until(what: str, done: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``done`` for a state change that no event announces (e.g. ``held``
    turning False at a deadline); fail, naming ``what``, after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.05)
