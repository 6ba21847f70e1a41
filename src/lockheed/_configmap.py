"""The ConfigMap locker: one ConfigMap per lock, in Go lockheed's format.

The ConfigMap is named ``<prefix>-<lock name>``, labelled ``lockheed/lock=""``
and holds the JSON state under ``data.lock`` (see :mod:`lockheed._state`).
Writes change only ``data.lock`` and lockheed's own annotations of the object
that was read, so labels and annotations of other tools (and Go's
``reserved/*`` reservation) survive. Every write is a PUT at the
resourceVersion read, or a POST for a new lock; nothing is ever listed to find
one lock.

Failure semantics: a 409 is handed back to the core, which re-reads and
decides again; a 404 on write means the object was deleted (a holder's loss);
403 raises :class:`~lockheed.LockForbidden`; transport errors raise
:class:`~lockheed.LockBackendError`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any

from ._clock import ServerClock
from ._core import CONFLICT, UNCHANGED, Create, Effect, Read, Replace, Watch
from ._kube import KubeAPI, KubeConfigSource
from ._state import LockState, Record, StateFormatError, decode_state, encode_state

__all__ = ["ConfigMapLocker", "validate_object_name"]

LABEL = "lockheed/lock"
DATA_KEY = "lock"
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


def validate_object_name(prefix: str, name: str) -> str:
    """``<prefix>-<name>``, checked to be a valid object name (DNS-1123 subdomain)."""
    if not isinstance(name, str) or not name:
        raise ValueError("a lock name must be a non-empty string")
    full = f"{prefix}-{name}" if prefix else name
    if len(full) > 253:
        raise ValueError(
            f"lock name {name!r} is too long: {full!r} has {len(full)} characters, at most 253"
        )
    if not _DNS1123_SUBDOMAIN.match(full):
        raise ValueError(
            f"lock name {name!r} does not give a valid object name: {full!r} must consist of "
            "lower-case letters, digits, '-' and '.', and start and end with a letter or digit"
        )
    return full


def decode_configmap(name: str, obj: Mapping[str, Any]) -> Record:
    meta = obj.get("metadata") or {}
    data = obj.get("data") or {}
    version = str(meta.get("resourceVersion", ""))
    annotations = dict(meta.get("annotations") or {})
    try:
        state: LockState | None = decode_state(data.get(DATA_KEY))
        error = None
    except StateFormatError as exc:
        state, error = None, str(exc)
    return Record(name, version, state, annotations, error, raw=obj)


def _apply_meta(metadata: dict[str, Any], meta: Mapping[str, str | None]) -> None:
    if not meta:
        return
    annotations = dict(metadata.get("annotations") or {})
    for key, value in meta.items():
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
    metadata["annotations"] = annotations


class ConfigMapLocker:
    """Locks kept in ConfigMaps of one namespace.

    ``namespace`` defaults to the kubeconfig context's (or the pod's) namespace;
    ``config`` is a kubeconfig path, a lightkube ``KubeConfig``/``SingleConfig``,
    or None for in-cluster config, ``$KUBECONFIG`` or ``~/.kube/config``;
    ``client`` is an ``httpx2.Client`` already set up for the cluster.
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
        self.prefix = prefix
        self.api = KubeAPI("configmaps", namespace, config=config, client=client, clock=clock)
        self.namespace = self.api.namespace
        self.clock = self.api.clock

    def __repr__(self) -> str:
        return f"ConfigMapLocker(namespace={self.namespace!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> ConfigMapLocker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def object_name(self, name: str) -> str:
        return validate_object_name(self.prefix, name)

    def lock_name(self, object_name: str) -> str | None:
        head = f"{self.prefix}-" if self.prefix else ""
        return object_name[len(head) :] if object_name.startswith(head) else None

    # -- encoding

    def _new_object(self, name: str, state: LockState, meta: Mapping[str, str | None]) -> Any:
        metadata: dict[str, Any] = {
            "name": self.object_name(name),
            "namespace": self.namespace,
            "labels": {LABEL: ""},
        }
        _apply_meta(metadata, {k: v for k, v in meta.items() if v is not None})
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata,
            "data": {DATA_KEY: encode_state(state)},
        }

    def _updated_object(self, effect: Replace) -> Any:
        obj = copy.deepcopy(effect.base.raw) if effect.base.raw else {}
        metadata = obj.setdefault("metadata", {})
        metadata["resourceVersion"] = effect.version
        metadata.setdefault("name", self.object_name(effect.name))
        labels = dict(metadata.get("labels") or {})
        labels.setdefault(LABEL, "")
        metadata["labels"] = labels
        metadata.pop("managedFields", None)
        _apply_meta(metadata, effect.meta)
        data = dict(obj.get("data") or {})
        data[DATA_KEY] = encode_state(effect.state)
        obj["data"] = data
        obj.setdefault("apiVersion", "v1")
        obj.setdefault("kind", "ConfigMap")
        return obj

    # -- I/O

    def execute(self, effect: Effect) -> Any:
        """Perform one effect of the core's flows; see :mod:`lockheed._core`."""
        if isinstance(effect, Read):
            path = "/" + self.object_name(effect.name)
            status, obj = self.api.request("GET", path, lock=effect.name)
            return None if status == 404 else decode_configmap(effect.name, obj)
        if isinstance(effect, Create):
            body = self._new_object(effect.name, effect.state, effect.meta)
            status, obj = self.api.request("POST", body=body, lock=effect.name)
            if status == 409:
                return CONFLICT
            if status == 404:  # the namespace does not exist
                from ._errors import LockBackendError

                raise LockBackendError(
                    f"cannot create lock {effect.name!r}: namespace {self.namespace!r} not found",
                    lock=effect.name,
                )
            return decode_configmap(effect.name, obj)
        if isinstance(effect, Replace):
            path = "/" + self.object_name(effect.name)
            body = self._updated_object(effect)
            status, obj = self.api.request("PUT", path, body=body, lock=effect.name)
            if status == 409:
                return CONFLICT
            return None if status == 404 else decode_configmap(effect.name, obj)
        if isinstance(effect, Watch):
            return self._watch(effect)
        raise TypeError(f"unknown effect {effect!r}")

    def _watch(self, effect: Watch) -> Any:
        obj_name = self.object_name(effect.name)
        while True:
            timeout = None
            if effect.until is not None:
                timeout = effect.until - self.clock.monotonic()
                if timeout <= 0:
                    return UNCHANGED
            for kind, obj in self.api.watch(obj_name, effect.version, timeout, lock=effect.name):
                if kind in ("ADDED", "MODIFIED"):
                    return decode_configmap(effect.name, obj)
                if kind == "DELETED":
                    return None
                if kind == "ERROR":  # e.g. 410 Gone: our version was compacted away
                    return self.execute(Read(effect.name))
            if effect.until is not None and self.clock.monotonic() >= effect.until:
                return UNCHANGED

    def list_records(self, page_size: int = 500) -> Iterator[Record]:
        """Every lock object of this locker (label ``lockheed/lock``), paginated."""
        params = {"labelSelector": LABEL, "limit": str(page_size)}
        while True:
            _, body = self.api.request("GET", params=params)
            for obj in body.get("items") or ():
                name = self.lock_name(obj.get("metadata", {}).get("name", ""))
                if name is not None:
                    yield decode_configmap(name, obj)
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                return
            params = {**params, "continue": token}
