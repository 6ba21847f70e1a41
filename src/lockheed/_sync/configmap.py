# Generated from lockheed/_async/configmap.py by scripts/unasync.py: do not edit.
"""The ConfigMap locker: one ConfigMap per lock, in Go lockheed's format.

Encoding is in :mod:`lockheed._codec`; this module performs the core's effects:
a read is one GET, a new lock one POST, every other write one PUT at the
resourceVersion read, a wait one watch of that single object. Nothing is ever
listed to find one lock. The asyncio locker sends its tasks' requests on one
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
    LABEL,
    decode_configmap,
    lock_name_of,
    new_configmap,
    updated_configmap,
    validate_object_name,
    validate_prefix,
)
from .._core import CONFLICT, Create, Effect, Read, Replace, Watch
from .._errors import LockBackendError
from .._kubecfg import KubeConfigSource
from .._state import Record
from .kube import KubeAPI
from .sessions import Watches

__all__ = ["ConfigMapLocker"]


class ConfigMapLocker:
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
        self.api = KubeAPI("configmaps", namespace, config=config, client=client, clock=clock)
        self.namespace = self.api.namespace
        self.config = self.api.config
        self.clock = self.api.clock
        self._watches = Watches(
            self.api, self.object_name, lambda name, obj: decode_configmap(name, obj), self.execute
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(namespace={self.namespace!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        self._watches.close()
        self.api.close()

    def __enter__(self) -> ConfigMapLocker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def object_name(self, name: str) -> str:
        return validate_object_name(self.prefix, name)

    def execute(self, effect: Effect) -> Any:
        """Perform one effect of the core's flows; see :mod:`lockheed._core`."""
        if isinstance(effect, Watch):
            return self._watch(effect)
        if isinstance(effect, Read):
            read = self._read
            return read(effect)
        if isinstance(effect, Create):
            create = self._create
            return create(effect)
        if isinstance(effect, Replace):
            replace = self._replace
            return replace(effect)
        raise TypeError(f"unknown effect {effect!r}")

    def _create(self, effect: Create) -> Any:
        """One POST (a create of a lock that one under way is making already is
        answered without one: :mod:`lockheed._async.joins`)."""
        name = effect.name
        body = new_configmap(self.object_name(name), self.namespace, effect.state, effect.meta)
        status, obj = self.api.request("POST", body=body, lock=name)
        if status == 404:
            raise LockBackendError(
                f"cannot create lock {name!r}: namespace {self.namespace!r} not found",
                lock=name,
            )
        return CONFLICT if status == 409 else decode_configmap(name, obj)

    def _read(self, effect: Read) -> Any:
        """One GET (the tasks' reads of one lock that come together share one:
        :mod:`lockheed._async.joins`)."""
        name = effect.name
        status, obj = self.api.request("GET", "/" + self.object_name(name), lock=name)
        return None if status == 404 else decode_configmap(name, obj)

    def _replace(self, effect: Replace) -> Any:
        """One PUT at the effect's version (the tasks' joins of one lock are
        written together: :mod:`lockheed._async.joins`)."""
        name = effect.name
        body = updated_configmap(self.object_name(name), effect)
        status, obj = self.api.request("PUT", "/" + self.object_name(name), body=body, lock=name)
        if status == 404:
            return None
        return CONFLICT if status == 409 else decode_configmap(name, obj)

    def _watch(self, effect: Watch) -> Any:
        return self._watches.watch(effect)

    def end_watch(self, session: object) -> None:
        """The operation that waited with ``session`` is over: stop its watch."""
        self._watches.end(session)

    def park_watch(self, session: object) -> None:
        """A released lock keeps ``session``'s watch open a few seconds, for its next acquire."""
        self._watches.park(session)

    def latest(self, session: object, record: Record | None) -> Record | None:
        """``record``, or a newer version that ``session``'s watch has received (no request)."""
        return self._watches.latest(session, record)

    def list_records(self, page_size: int = 500) -> list[Record]:
        """Every lock object of this locker (label ``lockheed/lock``), paginated."""
        params = {"labelSelector": LABEL, "limit": str(page_size)}
        out: list[Record] = []
        while True:
            _, body = self.api.request("GET", params=params)
            for obj in body.get("items") or ():
                name = lock_name_of(self.prefix, obj.get("metadata", {}).get("name", ""))
                if name is not None:
                    out.append(decode_configmap(name, obj))
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                return out
            params = {**params, "continue": token}
