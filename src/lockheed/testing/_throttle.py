"""429 Too Many Requests from the API server itself, for one user.

The API server's priority and fairness (APF) admission answers 429 with a
``Retry-After`` header when a request's priority level has no free seat and
rejects rather than queues. :func:`throttled` creates a level with no seats of
its own (APF still lets one request run at a time in it) and a flow schema
that sends every request of one user there, then keeps that one seat taken by
a request of the user whose body never ends. Every other request of the user
gets 429; other clients, the admin among them, are untouched. Because TLS is
passed through, the fault proxy cannot answer 429 itself; this works on any
cluster where the admin may manage ``flowcontrol.apiserver.k8s.io`` objects.

Failure semantics: when the block ends, even if it raised, the stalled request
is finished and the objects are deleted. Entering and leaving wait (bounded by
``timeout``) until the user's requests are rejected, then until they are
served again, and raise :class:`~lockheed.testing.ClusterError` otherwise.
The API server ends the stalled request after its request timeout (a minute
by default); it is then sent again at once, so a few requests may slip
through at that moment in a longer block. A stalled request that was turned
away (429) because another request of the user held the seat at that moment
is answered at once, but the client sends the whole body before it reads an
answer: so while its body waits, the holder probes as the user, and a probe
that is served shows the seat is not held: that request is ended and another
sent.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2

from ._cluster import Cluster, ClusterError, unique_name

__all__ = ["throttled"]

_FLOWCONTROL = "/apis/flowcontrol.apiserver.k8s.io/v1"
_WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
_PROBE = "/api"
_PRECEDENCE = 10  # ahead of every default schema but "exempt" (system:masters) and "probes"
_POLL_INTERVAL = 0.05
_LEVEL_HEADER = "x-kubernetes-pf-prioritylevel-uid"
_HOLD_LIMIT = 3600.0  # a stalled request never outlives this, even if nobody ends it
_HOLD_CHECK = 0.5  # how often a stalled request's holder checks that it holds the seat


def whoami(cluster: Cluster, kubeconfig: Path | str) -> str:
    """The user name the API server gives the credentials of ``kubeconfig``."""
    with cluster.http_client(Path(kubeconfig)) as http:
        response = http.post(
            _WHOAMI, json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        )
    if response.status_code != 201:
        raise ClusterError(f"SelfSubjectReview failed: HTTP {response.status_code} {response.text}")
    name = (response.json().get("status") or {}).get("userInfo", {}).get("username")
    if not name:
        raise ClusterError(f"SelfSubjectReview returned no user name: {response.text}")
    return str(name)


def _objects(name: str, user: str) -> tuple[dict[str, Any], dict[str, Any]]:
    level = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": name},
        "spec": {
            "type": "Limited",
            "limited": {
                "nominalConcurrencyShares": 0,  # no seats of its own
                "lendablePercent": 0,
                "borrowingLimitPercent": 0,  # and none borrowed
                "limitResponse": {"type": "Reject"},
            },
        },
    }
    schema = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name},
        "spec": {
            "priorityLevelConfiguration": {"name": name},
            "matchingPrecedence": _PRECEDENCE,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [{"kind": "User", "user": {"name": user}}],
                    "resourceRules": [
                        {
                            "verbs": ["*"],
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "namespaces": ["*"],
                            "clusterScope": True,
                        }
                    ],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                }
            ],
        },
    }
    return level, schema


def _wait_until(
    user_http: httpx2.Client,
    timeout: float,
    user: str,
    state: str,
    done: Any,
) -> None:
    """Probe as the user until ``done(response)``; ClusterError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response: httpx2.Response | None = user_http.get(_PROBE)
        except httpx2.TransportError:
            response = None
        if response is not None and done(response):
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"requests of {user!r} were not {state} within {timeout:g}s")
        time.sleep(_POLL_INTERVAL)


class _SeatHolder:
    """Requests of the user whose body stalls until :meth:`finish`: the API
    server has admitted each one and is reading its body, so it holds the seat.
    One found not to hold it (a probe of the user is served) is ended, and the
    next one sent."""

    def __init__(self, cluster: Cluster, kubeconfig: Path) -> None:
        self._http = cluster.http_client(kubeconfig)
        self._probe = cluster.http_client(kubeconfig)
        self._finish = threading.Event()
        self.sent = 0
        self.turned_away = 0  # requests found not to hold the seat, and ended
        self._thread = threading.Thread(target=self._run, name="lockheed-throttle", daemon=True)
        self._thread.start()

    def _seat_free(self) -> bool:
        """Whether a request of the user is served now: then no request holds the seat."""
        try:
            return self._probe.get(_PROBE).status_code != 429
        except httpx2.TransportError:
            return False  # cannot tell: keep holding

    def _body(self) -> Iterator[bytes]:
        yield b'{"apiVersion":"authentication.k8s.io/v1",'
        deadline = time.monotonic() + _HOLD_LIMIT
        while not self._finish.wait(_HOLD_CHECK) and time.monotonic() < deadline:
            if self._seat_free():  # this request was turned away: end it, send another
                self.turned_away += 1
                break
        yield b'"kind":"SelfSubjectReview"}'

    def _run(self) -> None:
        timeout = httpx2.Timeout(30.0, read=None, write=None)
        headers = {"Content-Type": "application/json"}
        while not self._finish.is_set():
            self.sent += 1
            with contextlib.suppress(httpx2.HTTPError):
                self._http.post(_WHOAMI, content=self._body(), headers=headers, timeout=timeout)

    def finish(self, timeout: float) -> None:
        self._finish.set()
        self._thread.join(timeout)
        self._http.close()
        self._probe.close()


@contextlib.contextmanager
def throttled(cluster: Cluster, kubeconfig: Path | str, *, timeout: float = 30.0) -> Iterator[str]:
    """``with throttled(cluster, user_kubeconfig):`` every request made with
    ``user_kubeconfig``'s credentials gets 429 until the block ends.

    Yields the throttled user name. Use a user of its own (e.g. from
    ``lockheed_restricted_user``): requests of ``system:masters``, like the admin
    kubeconfig's, are exempt from APF and cannot be throttled.
    """
    path = Path(kubeconfig)
    user = whoami(cluster, path)
    name = unique_name("lockheed-throttle")
    level, schema = _objects(name, user)
    with cluster.http_client() as admin, cluster.http_client(path) as user_http:
        with contextlib.ExitStack() as undo:
            uids = {}
            for kind, body in (("prioritylevelconfigurations", level), ("flowschemas", schema)):
                response = admin.post(f"{_FLOWCONTROL}/{kind}", json=body)
                if response.status_code != 201:
                    raise ClusterError(
                        f"cannot create {kind}/{name}: HTTP {response.status_code} {response.text}"
                    )
                uids[kind] = response.json()["metadata"]["uid"]
                undo.callback(admin.delete, f"{_FLOWCONTROL}/{kind}/{name}")
            level_uid = uids["prioritylevelconfigurations"]
            _wait_until(
                user_http,
                timeout,
                user,
                "sent to the new priority level",
                lambda r: r.headers.get(_LEVEL_HEADER) == level_uid,
            )
            holder = _SeatHolder(cluster, path)
            undo.callback(holder.finish, timeout)
            _wait_until(user_http, timeout, user, "throttled", lambda r: r.status_code == 429)
            yield user
        _wait_until(user_http, timeout, user, "served again", lambda r: r.status_code != 429)
