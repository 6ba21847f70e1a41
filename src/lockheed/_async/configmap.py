"""The ConfigMap locker: one ConfigMap per lock, in Go lockheed's format.

Encoding is in :mod:`lockheed._codec`; the core's effects are performed as
for every Kubernetes locker (:mod:`lockheed._async.kubelocker`): a read is one
GET, a new lock one POST, every other write one PUT at the resourceVersion
read, a wait one watch of that single object. Nothing is ever listed to find
one lock. The asyncio locker sends its tasks' requests on one
lock together where that saves requests without changing any answer: joins
and leaves of the line in one write at a time, reads asked together as one,
and no second create of a lock that one under way is making
(:mod:`lockheed._async.joins`).

Failure semantics: a 409 is handed back to the core as ``CONFLICT`` (it
re-reads and decides again); a 404 on write means the object was deleted (a
holder's loss); 401 raises :class:`~lockheed.LockUnauthorized`, 403
:class:`~lockheed.LockForbidden`; transport errors raise
:class:`~lockheed.LockBackendError`. A ConfigMap of the lock's name without
the ``lockheed/lock`` label was not made by lockheed (nor Go lockheed) and is
refused with :class:`~lockheed.LockStateError` unless a force condition
matches. A bad ``prefix`` is refused at construction. A watch whose version was
compacted away (410) falls back to a fresh read.
"""

from __future__ import annotations

from typing import Any

from .._clock import ServerClock
from .._codec import (
    decode_configmap,
    new_configmap,
    updated_configmap,
    validate_prefix,
)
from .._core import Create, Replace
from .._kubecfg import KubeConfigSource
from .._state import Record
from .kube import AsyncKubeAPI
from .kubelocker import AsyncKubeLocker

__all__ = ["AsyncConfigMapLocker"]


class AsyncConfigMapLocker(AsyncKubeLocker):
    """Locks kept in ConfigMaps of one namespace.

    ``namespace`` defaults to the kubeconfig context's (or the pod's) namespace;
    ``config`` is a kubeconfig path, a lightkube ``KubeConfig``/``SingleConfig``,
    or None for in-cluster config, ``$KUBECONFIG`` or ``~/.kube/config``;
    ``client`` is an ``httpx2`` client already set up for the cluster.
    ``config`` is then kept as ``self.config``, a lightkube ``SingleConfig``
    whose ``repr`` shows no credentials.
    """

    kind = "ConfigMap"

    def __init__(
        self,
        namespace: str | None = None,
        *,
        prefix: str = "lockheed",
        config: KubeConfigSource = None,
        client: Any = None,
        clock: ServerClock | None = None,
    ):
        self.prefix = validate_prefix(prefix)
        self._start(
            AsyncKubeAPI("configmaps", namespace, config=config, client=client, clock=clock)
        )

    def _new_body(self, name: str, effect: Create) -> dict[str, Any]:
        return new_configmap(name, self.namespace, effect.state, effect.meta)

    def _updated_body(self, name: str, effect: Replace) -> dict[str, Any]:
        return updated_configmap(name, effect)

    def _decode(self, name: str, obj: Any) -> Record:
        return decode_configmap(name, obj)
