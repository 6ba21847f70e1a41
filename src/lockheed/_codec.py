"""The ConfigMap form of a lock, in Go lockheed's format (no I/O).

The ConfigMap is named ``<prefix>-<lock name>``, labelled ``lockheed/lock=""``
and holds the JSON state under ``data.lock`` (see :mod:`lockheed._state`). An
update changes only ``data.lock``, lockheed's own annotations and its view
labels (``lockheed/w.*``, :func:`lockheed._queue.view_labels`: who must see
every change) of the object that was read, so labels and annotations of
other tools, and Go's ``reserved/*`` reservation, survive.

Go lockheed labels the ConfigMaps it creates in the same way. A ConfigMap of a
lock's name without the label was made by something else: it decodes as a
record without state whose ``error`` says so, and the core refuses to take it
over unless a force condition matches, as it does for malformed state.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._core import TOKEN_HOLDER_KEY, Replace
from ._queue import read_queue, view_labels, with_view_labels
from ._state import LockState, Record, StateFormatError, decode_state, encode_state

__all__ = [
    "LABEL",
    "decode_configmap",
    "labelled",
    "new_configmap",
    "updated_configmap",
    "validate_object_name",
    "validate_prefix",
]

LABEL = "lockheed/lock"
DATA_KEY = "lock"
_DNS1123_SUBDOMAIN = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.ASCII
)


def validate_prefix(prefix: str) -> str:
    """Check a locker's prefix: ``<prefix>-<name>`` must be able to be a valid object name.

    The empty prefix is allowed (the object is then named as the lock).
    """
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, not {type(prefix).__name__}")
    if prefix and (len(prefix) > 251 or not _DNS1123_SUBDOMAIN.fullmatch(f"{prefix}-x")):
        raise ValueError(
            f"prefix {prefix!r} cannot begin object names: it must be at most 251 characters "
            "of lower-case letters, digits, '-' and '.', start with a letter or digit and "
            "not end with '.', since objects are named '<prefix>-<lock name>'"
        )
    return prefix


def validate_object_name(prefix: str, name: str) -> str:
    """``<prefix>-<name>``, checked to be a valid object name (DNS-1123 subdomain)."""
    if not isinstance(name, str) or not name:
        raise ValueError("a lock name must be a non-empty string")
    full = f"{prefix}-{name}" if prefix else name
    if len(full) > 253:
        raise ValueError(
            f"lock name {name!r} is too long: {full!r} has {len(full)} characters, at most 253"
        )
    if not _DNS1123_SUBDOMAIN.fullmatch(full):
        raise ValueError(
            f"lock name {name!r} does not give a valid object name: {full!r} must consist of "
            "lower-case letters, digits, '-' and '.', and start and end with a letter or digit"
        )
    return full


def lock_name_of(prefix: str, object_name: str) -> str | None:
    head = f"{prefix}-" if prefix else ""
    return object_name[len(head) :] if object_name.startswith(head) else None


def decode_configmap(name: str, obj: Mapping[str, Any]) -> Record:
    meta = obj.get("metadata") or {}
    data = obj.get("data") or {}
    version = str(meta.get("resourceVersion", ""))
    annotations = dict(meta.get("annotations") or {})
    if LABEL not in (meta.get("labels") or {}):
        # Not created by lockheed (Go's and ours carry the label): never adopted
        # silently. The core refuses a record without state unless forced.
        foreign = (
            f"ConfigMap {meta.get('name', name)!r} has no {LABEL!r} label: lockheed did not "
            "create it, so it is not taken over unless a force condition matches"
        )
        return Record(name, version, None, annotations, foreign, raw=obj)
    try:
        state: LockState | None = decode_state(data.get(DATA_KEY))
        error: str | None = None
    except StateFormatError as exc:
        state, error = None, str(exc)
    return Record(name, version, state, annotations, error, raw=obj)


def labelled(
    labels: Mapping[str, str], state: LockState, annotations: Mapping[str, str] | None
) -> dict[str, str]:
    """``labels`` with the view labels of the object written with ``state`` and
    ``annotations`` (its line): see :func:`lockheed._queue.view_labels`."""
    meta = annotations or {}
    wanted = view_labels(state.leases, read_queue(meta), meta.get(TOKEN_HOLDER_KEY))
    return with_view_labels(labels, wanted)


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


def new_configmap(
    object_name: str, namespace: str, state: LockState, meta: Mapping[str, str | None]
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": object_name, "namespace": namespace, "labels": {LABEL: ""}}
    _apply_meta(metadata, {k: v for k, v in meta.items() if v is not None})
    metadata["labels"] = labelled(metadata["labels"], state, metadata.get("annotations"))
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {DATA_KEY: encode_state(state)},
    }


def updated_configmap(object_name: str, effect: Replace) -> dict[str, Any]:
    # Copy only the levels this changes; the rest is shared with the read object,
    # which is never modified (renewal is a hot path).
    obj: dict[str, Any] = dict(effect.base.raw or {})
    metadata = obj["metadata"] = dict(obj.get("metadata") or {})
    metadata["resourceVersion"] = effect.version
    metadata.setdefault("name", object_name)
    labels = dict(metadata.get("labels") or {})
    labels.setdefault(LABEL, "")
    metadata.pop("managedFields", None)
    _apply_meta(metadata, effect.meta)
    metadata["labels"] = labelled(labels, effect.state, metadata.get("annotations"))
    data = dict(obj.get("data") or {})
    data[DATA_KEY] = encode_state(effect.state)
    obj["data"] = data
    obj.setdefault("apiVersion", "v1")
    obj.setdefault("kind", "ConfigMap")
    return obj
