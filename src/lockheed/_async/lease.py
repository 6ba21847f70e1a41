"""The Lease locker: one ``coordination.k8s.io/v1`` Lease per lock, as client-go keeps it.

Encoding, and the rule by which a holder's lease is judged expired, are in
:mod:`lockheed._leasecodec`; this module performs the core's effects exactly as
the ConfigMap locker does: a read is one GET, a new lock one POST, every other
write one PUT at the resourceVersion read, a wait one watch of that single
Lease (by field selector). Nothing is ever listed to find one lock (the asyncio
locker's tasks share requests on one lock as the ConfigMap one's do). The locker
remembers, per lock, when it first saw each resourceVersion (the server's
time, latest bound, and the monotonic time): client-go's rule, a holder's
lease runs out ``leaseDurationSeconds`` after that sighting on the monotonic
clock, which the core applies beside the server-time rule.

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
from .._codec import LABEL, lock_name_of, validate_object_name
from .._core import CONFLICT, Create, Effect, Read, Replace, Watch
from .._errors import LockBackendError
from .._kubecfg import KubeConfigSource
from .._leasecodec import API_PATH, Sightings, decode_lease, new_lease, updated_lease
from .._state import Record
from .joins import Creates, Joins, Reads  # unasync: async-only
from .kube import AsyncKubeAPI
from .sessions import AsyncWatches

__all__ = ["AsyncLeaseLocker"]


class AsyncLeaseLocker:
    """Locks kept in Leases (``coordination.k8s.io/v1``) of one namespace.

    The arguments are those of :class:`~lockheed.AsyncConfigMapLocker`:
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
        self.api = AsyncKubeAPI(
            "leases", namespace, config=config, client=client, api_path=API_PATH, clock=clock
        )
        self.namespace = self.api.namespace
        self.config = self.api.config
        self.clock = self.api.clock
        self._seen = Sightings()
        self._watches = AsyncWatches(self.api, self.object_name, self._decode, self.execute)
        self._joins = Joins(self._replace)  # unasync: async-only
        self._reads = Reads(self._read)  # unasync: async-only
        self._creates = Creates(self._create)  # unasync: async-only

    def __repr__(self) -> str:
        return f"{type(self).__name__}(namespace={self.namespace!r}, prefix={self.prefix!r})"

    async def aclose(self) -> None:
        await self._watches.aclose()
        await self.api.aclose()

    async def __aenter__(self) -> AsyncLeaseLocker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def object_name(self, name: str) -> str:
        return validate_object_name(self.prefix, name)

    def _decode(self, name: str, obj: Any) -> Record:
        """Decode, judging expiry with this locker's first sighting of the version
        (it was written before we received it, so a lease timed from then, on
        the monotonic clock, ends no earlier than its holder believes)."""
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        mono = self.clock.monotonic()
        observed, sighted = self._seen.first(name, version, self.clock.bounds()[1], mono)
        return decode_lease(name, obj, observed, sighted)

    def _now(self) -> datetime:
        return self.clock.bounds()[1]

    async def execute(self, effect: Effect) -> Any:
        """Perform one effect of the core's flows; see :mod:`lockheed._core`."""
        if isinstance(effect, Watch):
            return await self._watch(effect)
        if isinstance(effect, Read):
            read = self._read
            read = self._reads.read  # unasync: async-only
            return await read(effect)
        if isinstance(effect, Create):
            create = self._create
            create = self._creates.create  # unasync: async-only
            return await create(effect)
        if isinstance(effect, Replace):
            replace = self._replace
            replace = self._joins.replace  # unasync: async-only
            return await replace(effect)
        raise TypeError(f"unknown effect {effect!r}")

    async def _create(self, effect: Create) -> Any:
        """One POST (a create of a lock that one under way is making already is
        answered without one: :mod:`lockheed._async.joins`)."""
        name = effect.name
        body = new_lease(
            self.object_name(name), self.namespace, effect.state, effect.meta, self._now()
        )
        status, obj = await self.api.request("POST", body=body, lock=name)
        if status == 404:
            raise LockBackendError(
                f"cannot create lock {name!r}: namespace {self.namespace!r} not found",
                lock=name,
            )
        return CONFLICT if status == 409 else self._decode(name, obj)

    async def _read(self, effect: Read) -> Any:
        """One GET (the tasks' reads of one lock that come together share one:
        :mod:`lockheed._async.joins`)."""
        name = effect.name
        status, obj = await self.api.request("GET", "/" + self.object_name(name), lock=name)
        return None if status == 404 else self._decode(name, obj)

    async def _replace(self, effect: Replace) -> Any:
        """One PUT at the effect's version (the tasks' joins of one lock are
        written together: :mod:`lockheed._async.joins`)."""
        name = effect.name
        body = updated_lease(self.object_name(name), effect, self._now())
        status, obj = await self.api.request(
            "PUT", "/" + self.object_name(name), body=body, lock=name
        )
        if status == 404:
            return None
        return CONFLICT if status == 409 else self._decode(name, obj)

    async def _watch(self, effect: Watch) -> Any:
        return await self._watches.watch(effect)

    async def end_watch(self, session: object) -> None:
        """The operation that waited with ``session`` is over: stop its watch."""
        await self._watches.end(session)

    async def park_watch(self, session: object) -> None:
        """A released lock keeps ``session``'s watch open a few seconds, for its next acquire."""
        await self._watches.park(session)

    async def latest(self, session: object, record: Record | None) -> Record | None:
        """``record``, or a newer version that ``session``'s watch has received (no request)."""
        return await self._watches.latest(session, record)

    async def list_records(self, page_size: int = 500) -> list[Record]:
        """Every lock Lease of this locker (label ``lockheed/lock``), paginated."""
        params = {"labelSelector": LABEL, "limit": str(page_size)}
        out: list[Record] = []
        while True:
            _, body = await self.api.request("GET", params=params)
            for obj in body.get("items") or ():
                name = lock_name_of(self.prefix, obj.get("metadata", {}).get("name", ""))
                if name is not None:
                    out.append(self._decode(name, obj))
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                return out
            params = {**params, "continue": token}
