"""Kubernetes Events (core/v1) on a forced takeover and on a loss, for one locker.

Not to be confused with :mod:`lockheed._events`, the lock events of Go
lockheed (codes 211 to 516) given to callbacks and the logger. This module
writes Events into the cluster, where ``kubectl get events`` and
``kubectl describe configmap lockheed-<name>`` show them:

* ``LockTakenOver`` (type Warning), by the instance whose forced acquire
  (``with_force``) removed another instance's live lease;
* ``LockLost`` (type Warning), by the instance that lost the lock, with the
  cause.

Each names the lock's object (ConfigMap or Lease) as its ``involvedObject``
and is created in the locker's namespace, which needs ``create`` on
``events`` (see deploy/rbac.yaml); the object's uid is read first (one GET)
so ``kubectl describe`` finds the Event.

Failure semantics: an Event never affects the lock. Events are queued (at
most :data:`QUEUE_LIMIT`; beyond that they are dropped with a warning) and
created by one daemon thread, so the lock's thread or event loop never
waits for them; at interpreter exit, queued Events get up to
:data:`EXIT_GRACE` seconds. A request that fails (403 without ``events
create``, the API server unreachable) is logged on the ``lockheed`` logger
at WARNING and not retried. Bad arguments (a locker that is not a
ConfigMap or Lease locker; a locker made with its own client and no
``config``) raise when the emitter is made.
"""

from __future__ import annotations

import atexit
import logging
import socket
import threading
from collections import deque
from datetime import datetime, timezone
from typing import Any

from ._errors import LockError
from ._kubecfg import KubeConfigSource
from ._sync.kube import KubeAPI

__all__ = ["KubeEvents"]

logger = logging.getLogger("lockheed")

#: Events waiting to be created, at most; more are dropped (and logged).
QUEUE_LIMIT = 100
#: At interpreter exit, how long (seconds) to wait for queued Events to be created.
EXIT_GRACE = 2.0
# The Kubernetes limits of an Event's fields.
_MESSAGE_LIMIT = 1024
_INSTANCE_LIMIT = 128
_NAME_LIMIT = 240  # generateName: the object's name and a dot, before 5 random characters

_OBJECTS = {
    # locker kind: (apiVersion, resource, API path)
    "ConfigMap": ("v1", "configmaps", "/api/v1"),
    "Lease": ("coordination.k8s.io/v1", "leases", "/apis/coordination.k8s.io/v1"),
}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeEvents:
    """Creates Kubernetes Events for the locks of one locker; an observer of
    :mod:`lockheed._observe`. Made by :func:`lockheed.metrics.enable_events`.

    ``config`` (a kubeconfig path, or a lightkube config) is the connection to
    create them with; by default the locker's own configuration.
    """

    def __init__(
        self, locker: Any, config: KubeConfigSource = None, *, component: str = "lockheed"
    ):
        kind = getattr(locker, "kind", None)
        if kind not in _OBJECTS:
            raise TypeError(
                f"Kubernetes Events need a ConfigMap or Lease locker, not {type(locker).__name__}"
            )
        source = config if config is not None else getattr(locker, "config", None)
        if source is None:
            raise ValueError(
                f"{locker!r} was made with its own HTTP client: pass config= (a kubeconfig) "
                "for the Events"
            )
        if not isinstance(component, str) or not component:
            raise ValueError("component must be a non-empty string")
        self.namespace: str = locker.namespace
        self.component = component
        self._kind = kind
        api_version, resource, api_path = _OBJECTS[kind]
        self._api_version = api_version
        self.api = KubeAPI("events", self.namespace, config=source)
        self._objects = KubeAPI(resource, self.namespace, client=self.api.client, api_path=api_path)
        self._host = socket.gethostname()[:_INSTANCE_LIMIT] or "unknown"
        self._pending: deque[tuple[str, dict[str, Any]]] = deque()
        self._busy = 0  # queued or being created
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"KubeEvents(namespace={self.namespace!r}, kind={self._kind!r})"

    # ------------------------------------------------------------ observer

    def acquired(
        self, lock: Any, wait: float, handed_off: bool, taken_from: tuple[str, ...]
    ) -> None:
        if taken_from:
            self._queue(
                lock,
                "LockTakenOver",
                f"lock {lock.name!r} taken over by instance {lock.instance_id} from "
                f"{', '.join(taken_from)} (force condition matched)",
            )

    def released(self, lock: Any) -> None:
        pass

    def lost(self, lock: Any, cause: str, error: BaseException) -> None:
        self._queue(
            lock,
            "LockLost",
            f"instance {lock.instance_id} lost lock {lock.name!r} ({cause}): {error}",
        )

    def renewal_failed(self, lock: Any) -> None:
        pass

    def request(self, verb: str, kind: str, status: str) -> None:
        pass

    # ------------------------------------------------------------ queue

    def _queue(self, lock: Any, reason: str, message: str) -> None:
        name = lock.locker.object_name(lock.name)
        now = _now()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name[:_NAME_LIMIT]}.", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": self._api_version,
                "kind": self._kind,
                "name": name,
                "namespace": self.namespace,
            },
            "reason": reason,
            "message": message[:_MESSAGE_LIMIT],
            "type": "Warning",
            "source": {"component": self.component, "host": self._host},
            "reportingComponent": self.component,
            "reportingInstance": self._host,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        with self._cond:
            if self._closed:
                logger.warning("lockheed: Event %s for lock %r not created: closed", reason, name)
                return
            if len(self._pending) >= QUEUE_LIMIT:
                logger.warning(
                    "lockheed: Event %s for lock %r dropped: %d Events already waiting",
                    reason,
                    name,
                    len(self._pending),
                )
                return
            self._pending.append((name, body))
            self._busy += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="lockheed-kube-events", daemon=True
                )
                self._thread.start()
                atexit.register(self.flush, EXIT_GRACE)
            self._cond.notify_all()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                name, body = self._pending.popleft()
            try:
                self._create(name, body)
            except Exception as exc:  # never let one Event stop the others
                logger.warning(
                    "lockheed: Event %s for lock object %r not created: %s",
                    body["reason"],
                    name,
                    exc,
                )
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _create(self, name: str, body: dict[str, Any]) -> None:
        try:
            status, obj = self._objects.request("GET", "/" + name)
        except LockError:
            status, obj = 0, None
        if status == 200 and isinstance(obj, dict):
            uid = obj.get("metadata", {}).get("uid")
            if uid:
                body["involvedObject"]["uid"] = uid
        status, _ = self.api.request("POST", body=body)
        if status not in (200, 201):
            logger.warning(
                "lockheed: Event %s for lock object %r not created: HTTP %d",
                body["reason"],
                name,
                status,
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued Event has been created (or has failed);
        False if ``timeout`` seconds passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._busy == 0, timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Create what is queued (waiting at most ``timeout`` seconds), then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            atexit.unregister(self.flush)
            thread.join(timeout)
        self.api.close()
