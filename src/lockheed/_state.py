"""Lock state and its wire form, byte-compatible with Go lockheed v0.5.3.

The state is one JSON document (``{"name", "lockType", "leases", "tags"}``);
expiry timestamps are RFC 3339 with up to nanosecond precision, as Go's
``time.Time`` writes them, and a lease that never expires carries Go's
``9999-12-31T23:59:59Z``. Decoding is strict: a document Go would not accept,
or that this library cannot interpret safely, raises :class:`StateFormatError`
and is then treated as malformed (never overwritten without force). Fields this
library does not know are kept and written back unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

__all__ = [
    "NEVER",
    "Lease",
    "LockState",
    "Record",
    "StateFormatError",
    "decode_state",
    "encode_state",
    "format_time",
    "parse_time",
]

UTC = timezone.utc
#: Go lockheed's expiry for a lease that never expires (duration 0).
NEVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)

MUTEX = "mutex"

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


class StateFormatError(ValueError):
    """The stored document is not a lock state that can be read safely."""


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (fraction of up to 9 digits, ``Z`` or offset) to UTC.

    Nanoseconds are truncated to microseconds, which moves an expiry earlier by
    less than a microsecond.
    """
    m = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise StateFormatError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    micros = int((m.group(7) or "0").ljust(9, "0")[:6])
    try:
        if m.group(8):
            tz = UTC
        else:
            hours, minutes = int(m.group(10)), int(m.group(11))
            if hours > 23 or minutes > 59:
                raise ValueError("zone offset out of range")
            sign = 1 if m.group(9) == "+" else -1
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        stamp = datetime(year, month, day, hour, minute, second, micros, tzinfo=tz)
        return stamp.astimezone(UTC) if tz is not UTC else stamp
    except (ValueError, OverflowError) as exc:
        raise StateFormatError(f"invalid timestamp {text!r}: {exc}") from None


def format_time(stamp: datetime) -> str:
    """Format as Go's ``time.RFC3339Nano`` in UTC: trailing zeros of the fraction dropped."""
    if stamp.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    stamp = stamp.astimezone(UTC)
    text = stamp.replace(tzinfo=None).isoformat(timespec="seconds")  # strftime: no 0-pad < 1000
    if stamp.microsecond:
        text += "." + f"{stamp.microsecond:06d}".rstrip("0")
    return text + "Z"


@dataclass(frozen=True)
class Lease:
    """One holder's lease. ``expires`` is :data:`NEVER` for a lease without duration.

    ``sighted_until`` (a Lease by other writers, see :mod:`lockheed._leasecodec`):
    the monotonic time (this process's clock) at which the lease runs out by
    client-go's rule, ``leaseDurationSeconds`` after this version was first
    seen; the core judges it on the monotonic clock (:func:`lockheed._core.sighted`).
    """

    instance_id: str
    expires: datetime
    sighted_until: float | None = field(default=None, compare=False)

    def live(self, now: datetime) -> bool:
        return self.expires > now


@dataclass(frozen=True)
class LockState:
    """The decoded ``data.lock`` document."""

    name: str
    lock_type: str = MUTEX
    leases: Mapping[str, Lease] = field(default_factory=lambda: MappingProxyType({}))
    tags: tuple[str, ...] = ()
    #: JSON fields this library does not know, written back as they were.
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def live_leases(self, now: datetime) -> list[Lease]:
        return [lease for lease in self.leases.values() if lease.live(now)]

    def with_leases(self, leases: Iterable[Lease]) -> LockState:
        return replace(self, leases=MappingProxyType({le.instance_id: le for le in leases}))


@dataclass(frozen=True)
class Record:
    """A lock object as a locker read or wrote it.

    ``version`` is the object's resourceVersion (or the Memory locker's counter);
    ``meta`` its annotations. ``state`` is None and ``error`` says why when the
    stored document could not be decoded.
    """

    name: str
    version: str
    state: LockState | None
    meta: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    error: str | None = None
    #: The locker's own representation of the object (for example the ConfigMap
    #: as JSON), kept so a write changes only what lockheed owns.
    raw: Any = field(default=None, compare=False, repr=False)
    #: What a peer that times a holder by the object's content compares (a
    #: Lease: client-go's leader-election record, at its one-second
    #: resolution). Two versions in a row with the same ``peer_view`` are one
    #: to such a peer, which times the holder from the first of them. None:
    #: every version is a change to every peer.
    peer_view: str | None = field(default=None, compare=False, repr=False)


def _lease_from_json(key: str, raw: Any) -> Lease:
    if not isinstance(raw, Mapping):
        raise StateFormatError(f"lease {key!r} is not an object")
    instance = raw.get("instanceID", key)
    if not isinstance(instance, str) or instance != key:
        raise StateFormatError(f"lease {key!r} has instanceID {instance!r}")
    expires = raw.get("expires")
    if not isinstance(expires, str):
        raise StateFormatError(f"lease {key!r} has no expiry timestamp")
    return Lease(key, parse_time(expires))


def decode_state(text: str | None) -> LockState:
    """Decode the ``data.lock`` document; raise :class:`StateFormatError` if malformed."""
    if text is None:
        raise StateFormatError("the object has no 'lock' data key")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise StateFormatError(f"lock state is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise StateFormatError("lock state is not a JSON object")
    name = doc.pop("name", "")
    lock_type = doc.pop("lockType", "")
    raw_leases = doc.pop("leases", None)
    raw_tags = doc.pop("tags", None)
    if not isinstance(name, str) or not isinstance(lock_type, str):
        raise StateFormatError("'name' and 'lockType' must be strings")
    if raw_leases is None:
        raw_leases = {}
    if not isinstance(raw_leases, dict):
        raise StateFormatError("'leases' must be an object or null")
    if raw_tags is None:
        raw_tags = []
    if not isinstance(raw_tags, list) or not all(isinstance(t, str) for t in raw_tags):
        raise StateFormatError("'tags' must be a list of strings")
    leases = {key: _lease_from_json(key, raw) for key, raw in raw_leases.items()}
    return LockState(
        name=name,
        lock_type=lock_type or MUTEX,
        leases=MappingProxyType(leases),
        tags=tuple(raw_tags),
        extra=MappingProxyType(doc),
    )


def encode_state(state: LockState) -> str:
    """Encode in Go's field order; ``tags`` omitted when empty, as Go does."""
    doc: dict[str, Any] = {
        "name": state.name,
        "lockType": state.lock_type,
        "leases": {
            key: {"instanceID": lease.instance_id, "expires": format_time(lease.expires)}
            for key, lease in state.leases.items()
        },
    }
    if state.tags:
        doc["tags"] = list(state.tags)
    for key, value in state.extra.items():
        doc.setdefault(key, value)
    return json.dumps(doc, separators=(",", ":"))
