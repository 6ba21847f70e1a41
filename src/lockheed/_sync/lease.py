# Generated from lockheed/_async/lease.py by scripts/unasync.py: do not edit.
"""The Lease locker: one ``coordination.k8s.io/v1`` Lease per lock, as client-go keeps it.

Encoding, and the rule by which a holder's lease is judged expired, are in
:mod:`lockheed._leasecodec`; the core's effects are performed exactly as for
the ConfigMap locker (:mod:`lockheed._async.kubelocker`): a read is one GET,
a new lock one POST, every other write one PUT at the resourceVersion read, a
wait one watch of that single Lease (by field selector). Nothing is ever
listed to find one lock (the asyncio locker's tasks share requests on one lock
as the ConfigMap one's do). The locker
remembers, per lock, when it first saw each holder's record (the server's
time, latest bound, and the monotonic time): client-go's rule, a holder's
lease runs out ``leaseDurationSeconds`` after that sighting on the monotonic
clock, which the core applies beside the server-time rule. A write that keeps
the holder's record (a join or a leave of the line) is sent under the field
manager ``lockheed-line``, so that it moves no stamp of the record.

Failure semantics: a 409 is handed back to the core as ``CONFLICT`` (it
re-reads and decides again); a 404 on write means the Lease was deleted (a
holder's loss); 403 raises :class:`~lockheed.LockForbidden` (for ``leases``);
transport errors raise :class:`~lockheed.LockBackendError`. A watch whose
version was compacted away (410) falls back to a fresh read. A state a Lease
cannot hold (several holders, a lock type other than ``mutex``) raises
:class:`~lockheed.LockStateError` before any request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .._clock import ServerClock
from .._core import Create, Replace
from .._kubecfg import KubeConfigSource
from .._leasecodec import (
    API_PATH,
    LINE_MANAGER,
    Sightings,
    decode_lease,
    line_write,
    new_lease,
    record_key,
    updated_lease,
)
from .._state import Record
from .kube import KubeAPI
from .kubelocker import KubeLocker

__all__ = ["LeaseLocker"]


class LeaseLocker(KubeLocker):
    """Locks kept in Leases (``coordination.k8s.io/v1``) of one namespace.

    The arguments are those of :class:`~lockheed.ConfigMapLocker`:
    ``namespace`` defaults to the kubeconfig context's (or the pod's) namespace;
    ``config`` is a kubeconfig path, a lightkube ``KubeConfig``/``SingleConfig``,
    or None for in-cluster config, ``$KUBECONFIG`` or ``~/.kube/config``;
    ``client`` is an ``httpx2`` client already set up for the cluster.
    """

    kind = "Lease"

    def __init__(
        self,
        namespace: str | None = None,
        *,
        prefix: str = "lockheed",
        config: KubeConfigSource = None,
        client: Any = None,
        clock: ServerClock | None = None,
    ):
        self.prefix = prefix
        self._seen = Sightings()
        self._start(
            KubeAPI(
                "leases", namespace, config=config, client=client, api_path=API_PATH, clock=clock
            )
        )

    def _new_body(self, name: str, effect: Create) -> dict[str, Any]:
        return new_lease(name, self.namespace, effect.state, effect.meta, self._now())

    def _updated_body(self, name: str, effect: Replace) -> dict[str, Any]:
        return updated_lease(name, effect, self._now())

    def _write_params(self, effect: Replace, body: dict[str, Any]) -> dict[str, str] | None:
        return {"fieldManager": LINE_MANAGER} if line_write(effect, body) else None

    def _decode(self, name: str, obj: Any) -> Record:
        """Decode, judging expiry with this locker's first sighting of the holder's
        record (it was written before we received it, so a lease timed from
        then, on the monotonic clock, ends no earlier than its holder believes)."""
        mono = self.clock.monotonic()
        record = record_key(obj)
        observed, sighted = self._seen.first(name, record, self.clock.bounds()[1], mono)
        return decode_lease(name, obj, observed, sighted)

    def _now(self) -> datetime:
        return self.clock.bounds()[1]
