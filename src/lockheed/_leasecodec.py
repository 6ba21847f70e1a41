"""The Lease form of a lock (``coordination.k8s.io/v1``), as client-go reads it (no I/O).

A lock is the Lease ``<prefix>-<lock name>``, labelled ``lockheed/lock=""``.
Its spec is client-go's leader-election record: ``holderIdentity`` (empty or
absent: free), ``leaseDurationSeconds``, ``acquireTime``, ``renewTime``
(MicroTime) and ``leaseTransitions`` (incremented on every change of holder,
as client-go does). lockheed's own fields are annotations: ``lockheed/name``,
``lockheed/lock-type`` (``mutex``), ``lockheed/tags`` (a JSON list) and the
fencing-token annotations. A write changes only the spec and those
annotations of the object that was read; other tools' labels, annotations and
spec fields (``preferredHolder``, ``strategy``) are kept.

Writing: a holder writes ``renewTime`` from the latest bound on the server's
time (each renewal at least a microsecond after the last: a spec written as
stored would be no write at all to the API server) and
``leaseDurationSeconds`` as its lease rounded up to whole seconds (client-go's
unit); a lease that never expires is written as the largest
duration a Lease can hold (2**31-1 s, about 68 years) and read back as never
expiring. A release writes what client-go's ``ReleaseOnCancel`` writes: an
empty holder with ``leaseDurationSeconds`` 1.

Expiry of a holder, whoever wrote the Lease: it has run out when **either**
rule says so. A remote ``renewTime`` is never compared with this host's wall
clock, and a writer's clock is never trusted when the server's own stamp is
there:

1. **Server stamp** (:func:`holder_expiry`, in ``Lease.expires``). The API
   server stamps every write that changes an object with its own time, in
   ``metadata.managedFields[].time`` of the writer's entry (checked on
   kube-apiserver v1.35 for writes by client-go and by lockheed: one-second
   resolution, truncated; a time sent by a client is replaced). The stamp
   ``W`` of the entries that own ``spec`` (:func:`server_stamp`) is the
   server's time of the last write that changed the holder's record, so the
   holder's lease ends by ``W + 1 s + leaseDurationSeconds`` in server time,
   which a
   contender compares with the *earliest* possible server time now
   (:class:`~lockheed._clock.ServerClock`). A fresh candidate thus takes a
   Lease last renewed long ago at once, and a live holder whose clock is off
   is never deposed early, because ``renewTime`` plays no part. A write
   that changes only metadata (a label added with kubectl; our waiters
   joining and leaving the line, sent under the field manager
   :data:`LINE_MANAGER`) moves no such stamp, so a line that keeps changing
   never keeps a dead holder's lease alive (checked on the real API server:
   another manager's update of metadata, even of fields the holder's entry
   owned, leaves that entry's time as it was).
   **No usable stamp** (managedFields stripped, which the server then never
   adds back on updates; or a stamp later than our own observation, which no
   server wrote): ``leaseDurationSeconds`` after this locker first saw the
   record, taken at the latest bound of the server's time then (the
   sighting below, as a server time); and, for a plainly stale record,
   ``renewTime + leaseDurationSeconds + STALE_MARGIN`` (60 s) if that is
   earlier. Only this fallback trusts a writer's clock, and only to within
   the margin: a holder whose clock is more than 60 s behind the server's
   may be deposed early when there is no stamp.
2. **Sighting** (client-go's rule, in ``Lease.sighted_until``): the lease runs
   out ``leaseDurationSeconds`` after this process first saw this holder's
   record (``spec``, :func:`record_key`; not the resourceVersion, which
   every join of the line changes), on its *monotonic* clock
   (``decode_lease``'s ``sighted``; :class:`Sightings` keeps the first
   sighting of each record, whether a watch or a read brought it). Safe
   without any clock agreement: the record was written after its writer
   sent it and seen after it was written, so a sighting is never earlier
   than the truth (a forgotten or late one is only later, and only makes a
   contender wait longer). It is
   compared on the monotonic clock at each decision
   (:func:`lockheed._core.sighted`), never converted into a server time at
   decode time: the earliest bound of the server clock rises as samples
   narrow it, which would let such a conversion end a lease up to a second
   early. A watching contender sees each renewal within milliseconds, so
   this is the tighter rule after a holder dies; a lease that never expires
   has no sighting deadline.

A holder's own belief counts from the first of its renewals in a row that
client-go cannot tell apart (:func:`peer_view`: its record, to the second):
client-go times a holder from when it first saw a record, so renewals within
one second of ``renewTime`` extend nothing for it, and the holder's loss
deadline does not move with them (``Record.peer_view``, used by the lock).

A write that keeps the holder's lease as it was read (a waiter joining the
line) leaves the holder's spec untouched: re-dating ``renewTime`` from our
clock could shorten what a contender timing it from its sighting allows. It
is sent under :data:`LINE_MANAGER` (:func:`line_write`).

Failure semantics: a Lease whose holder is set but whose record cannot be
interpreted (no positive ``leaseDurationSeconds``, an unreadable tags
annotation) decodes as malformed and is never overwritten unless forced. A
Lease has one holder: a stored lock type other than ``mutex`` is refused by
the core, and encoding a state with several leases or another lock type
raises :class:`~lockheed.LockStateError`. Go lockheed's ``reserved/*``
annotations mean nothing on a Lease and are ignored (and kept).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, Final

from ._codec import LABEL, labelled
from ._core import Replace
from ._errors import LockStateError
from ._state import (
    MUTEX,
    NEVER,
    Lease,
    LockState,
    Record,
    StateFormatError,
    format_time,
    parse_time,
)

__all__ = [
    "API_PATH",
    "FOREVER_SECONDS",
    "LINE_MANAGER",
    "STALE_MARGIN",
    "Sightings",
    "decode_lease",
    "format_micro_time",
    "holder_expiry",
    "lease_seconds",
    "line_write",
    "new_lease",
    "record_key",
    "server_stamp",
    "updated_lease",
]

UTC = timezone.utc
API_PATH: Final = "/apis/coordination.k8s.io/v1"
NAME_KEY: Final = "lockheed/name"
TYPE_KEY: Final = "lockheed/lock-type"
TAGS_KEY: Final = "lockheed/tags"
#: The largest ``leaseDurationSeconds`` (int32): a lease that never expires.
FOREVER_SECONDS: Final = 2**31 - 1
#: managedFields times are whole seconds, truncated.
STAMP_RESOLUTION: Final = timedelta(seconds=1)
#: How far in the server's past ``renewTime + leaseDurationSeconds`` must be for
#: an unstamped record to count as stale before client-go's rule says so.
STALE_MARGIN: Final = timedelta(seconds=60)
_RESERVED = "reserved/"
#: The field manager of our writes that keep the holder's record (joins and
#: leaves of the line): the record's stamp stays the one of its last change.
LINE_MANAGER: Final = "lockheed-line"


#: The resolution of a MicroTime: our renewal's ``renewTime`` is at least this
#: much after the one it replaces.
_TICK: Final = timedelta(microseconds=1)


def format_micro_time(stamp: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with exactly six fraction digits,
    the only form the API server accepts."""
    if stamp.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    stamp = stamp.astimezone(UTC)
    return stamp.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def lease_seconds(expires: datetime, now: datetime) -> int:
    """``leaseDurationSeconds`` for a lease ending at ``expires``, written at ``now``:
    rounded up to whole seconds, at least 1; :data:`FOREVER_SECONDS` for never."""
    if expires >= NEVER:
        return FOREVER_SECONDS
    micros = (expires - now) // timedelta(microseconds=1)
    return max(1, min(FOREVER_SECONDS - 1, -(-micros // 1_000_000)))


def server_stamp(metadata: Mapping[str, Any]) -> datetime | None:
    """The server's time of the last write that changed the holder's record.

    That is the newest ``managedFields[].time`` among the entries that own a
    field of ``spec`` (an entry whose fields are not given counts as one): an
    update that changes a field makes its writer that field's owner and moves
    the writer's entry to that write's time, while a write by another manager
    that changes only metadata (our waiters' joins and leaves, a label added
    with kubectl) moves no entry that owns the record. When no entry owns
    ``spec``, the newest of all the stamps."""
    newest = owner = None
    entries = metadata.get("managedFields")
    for entry in entries if isinstance(entries, list) else ():
        text = entry.get("time") if isinstance(entry, Mapping) else None
        if not isinstance(text, str):
            continue
        try:
            stamp = parse_time(text)
        except StateFormatError:
            continue
        newest = stamp if newest is None else max(newest, stamp)
        fields = entry.get("fieldsV1")
        if not isinstance(fields, Mapping) or fields.get("f:spec"):
            owner = stamp if owner is None else max(owner, stamp)
    return newest if owner is None else owner


def record_key(obj: Mapping[str, Any]) -> str:
    """The holder's record exactly as stored (``spec``): what a sighting is of.
    A write that keeps it (a waiter joining the line) extends no holder's lease,
    so it is not a new sighting."""
    return json.dumps(obj.get("spec"), sort_keys=True, default=str)


def line_write(effect: Replace, body: Mapping[str, Any]) -> bool:
    """Whether the update ``body`` of ``effect`` keeps the holder's record as it
    was read: such a write is sent under :data:`LINE_MANAGER`, so that it moves
    no stamp of the record (see :func:`server_stamp`)."""
    old = (effect.base.raw or {}).get("spec")
    return isinstance(old, Mapping) and body.get("spec") == old


def holder_expiry(
    seconds: int, stamp: datetime | None, observed: datetime, renew_time: datetime | None
) -> datetime:
    """The latest server time at which a holder's lease may still run (see the module).

    ``seconds`` is ``leaseDurationSeconds``; ``stamp`` the server's stamp of
    the record (:func:`server_stamp`); ``observed`` the latest bound on the
    server's time when this record was first seen; ``renew_time`` the writer's ``renewTime``.
    """
    if seconds >= FOREVER_SECONDS:
        return NEVER
    duration = timedelta(seconds=seconds)
    if stamp is not None and stamp <= observed:
        return stamp + STAMP_RESOLUTION + duration
    expires = observed + duration
    if renew_time is not None and renew_time < NEVER - duration - STALE_MARGIN:
        expires = min(expires, renew_time + duration + STALE_MARGIN)
    return expires


class Sightings:
    """When this process first saw each holder's record of each lock (its
    :func:`record_key`): the latest bound on the server's time then, and the
    monotonic time (bookkeeping, no I/O).

    A record seen again (in a new version that only changed the line, by a
    watch and a GET, after a reconnect or a relist) keeps its first sighting;
    the last few records of a lock are kept, so an older answer decoded after
    a newer event does not re-date the newer one. A forgotten record is
    sighted anew, which is later than the truth and so only makes a contender
    wait longer, never a holder lose its lease early. (A record never comes
    back once replaced: each renewal and each change of holder writes a new
    ``renewTime``.)
    """

    def __init__(self, limit: int = 4096, per_lock: int = 4):
        self.limit, self.per_lock = limit, per_lock
        self._seen: dict[str, dict[str, tuple[datetime, float]]] = {}
        self._mutex = threading.Lock()  # a sync locker decodes in watcher threads too

    def first(
        self, name: str, record: str, observed: datetime, mono: float
    ) -> tuple[datetime, float]:
        """``(observed, mono)`` of the first sighting of ``record`` of lock ``name``;
        this sighting (now: ``observed``, ``mono``) if it is the first."""
        with self._mutex:
            return self._first(name, record, observed, mono)

    def _first(
        self, name: str, record: str, observed: datetime, mono: float
    ) -> tuple[datetime, float]:
        records = self._seen.get(name)
        if records is None:
            if len(self._seen) >= self.limit:
                self._seen.clear()
            records = self._seen[name] = {}
        first = records.get(record)
        if first is None:
            first = records[record] = (observed, mono)
            while len(records) > self.per_lock:
                del records[next(iter(records))]
        return first


def _tags(annotations: Mapping[str, str]) -> tuple[str, ...]:
    text = annotations.get(TAGS_KEY)
    if text is None:
        return ()
    try:
        tags = json.loads(text)
    except (ValueError, RecursionError):
        raise StateFormatError(f"annotation {TAGS_KEY} is not JSON: {text[:80]!r}") from None
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise StateFormatError(f"annotation {TAGS_KEY} must be a JSON list of strings")
    return tuple(tags)


def _optional_time(spec: Mapping[str, Any], key: str) -> datetime | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise StateFormatError(f"spec.{key} is not a timestamp")
    return parse_time(value)


def _state(
    name: str,
    obj: Mapping[str, Any],
    annotations: Mapping[str, str],
    observed: datetime,
    sighted: float | None,
) -> LockState:
    spec = obj.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise StateFormatError("spec is not an object")
    lock_type = annotations.get(TYPE_KEY) or MUTEX
    state = LockState(annotations.get(NAME_KEY) or name, lock_type, tags=_tags(annotations))
    holder = spec.get("holderIdentity")
    if holder is None or holder == "":
        return state
    if not isinstance(holder, str):
        raise StateFormatError("spec.holderIdentity is not a string")
    seconds = spec.get("leaseDurationSeconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        raise StateFormatError(
            f"holder {holder!r} has no positive leaseDurationSeconds ({seconds!r})"
        )
    renew_time = _optional_time(spec, "renewTime")
    stamp = server_stamp(obj.get("metadata") or {})
    expires = holder_expiry(seconds, stamp, observed, renew_time)
    until = None if sighted is None or expires >= NEVER else sighted + seconds
    return state.with_leases([Lease(holder, expires, until)])


def decode_lease(
    name: str, obj: Mapping[str, Any], observed: datetime, sighted: float | None = None
) -> Record:
    """The Record of a Lease; ``observed`` is the latest bound on the server's time
    when this locker first saw its holder's record, ``sighted`` the monotonic
    time then (None: the holder's lease has no monotonic bound, only
    :func:`holder_expiry`'s)."""
    meta = obj.get("metadata") or {}
    annotations = dict(meta.get("annotations") or {})
    version = str(meta.get("resourceVersion", ""))
    try:
        state: LockState | None = _state(name, obj, annotations, observed, sighted)
        error = None
    except StateFormatError as exc:
        state, error = None, str(exc)
    visible = {k: v for k, v in annotations.items() if not k.startswith(_RESERVED)}
    return Record(
        name, version, state, MappingProxyType(visible), error, raw=obj, peer_view=peer_view(obj)
    )


def peer_view(obj: Mapping[str, Any]) -> str:
    """The Lease as client-go's leader election compares it: its record
    (``LeaseSpecToLeaderElectionRecord``) as JSON, whose times are RFC 3339 in
    UTC to the second. client-go times a holder from when it first saw the
    record: renewals within one second of ``renewTime`` look to it like one."""
    spec = obj.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}

    def second(key: str) -> Any:
        try:
            stamp = _optional_time(spec, key)
        except StateFormatError:
            return ["unreadable", spec.get(key)]
        return None if stamp is None else format_time(stamp.replace(microsecond=0))

    record = [
        spec.get("holderIdentity"),
        spec.get("leaseDurationSeconds"),
        second("acquireTime"),
        second("renewTime"),
        spec.get("leaseTransitions"),
        spec.get("strategy"),
        spec.get("preferredHolder"),
    ]
    return json.dumps(record, default=str)


def _one_holder(state: LockState) -> Lease | None:
    if state.lock_type != MUTEX or len(state.leases) > 1:
        what = (
            f"lock type {state.lock_type!r}"
            if state.lock_type != MUTEX
            else f"{len(state.leases)} holders"
        )
        raise LockStateError(
            f"lock {state.name!r}: a Lease has one holder; {what} cannot be kept in a Lease",
            lock=state.name,
        )
    return next(iter(state.leases.values()), None)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _previous(old: Mapping[str, Any], key: str) -> datetime | None:
    try:
        return _optional_time(old, key)
    except StateFormatError:
        return None


def _spec(
    old: Mapping[str, Any],
    state: LockState,
    now: datetime,
    created: bool,
    read: Lease | None = None,
) -> dict[str, Any]:
    lease = _one_holder(state)
    spec = dict(old)
    if lease is not None and lease == read and lease.instance_id == old.get("holderIdentity"):
        # The holder's lease as it was read (a waiter joining the line): its
        # record stays its own. Re-dating it from our clock could shorten what
        # a contender timing it from its sighting allows the holder.
        return spec
    renewed = now
    if lease is not None and lease.instance_id == old.get("holderIdentity"):
        # Our own renewal: the latest bound on the server's time can move back a
        # little as the clock estimate tightens; renewTime does not, and it
        # always moves on: a renewal that wrote the spec as stored would be no
        # change at all to the API server (no new resourceVersion, no new
        # stamp), so no contender would see it, while we counted it as one.
        previous = _previous(old, "renewTime")
        renewed = now if previous is None else max(now, previous + _TICK)
    stamp = format_micro_time(renewed)
    transitions = _int(old.get("leaseTransitions"))
    if lease is None:  # what client-go's ReleaseOnCancel writes
        spec.update(holderIdentity="", leaseDurationSeconds=1, acquireTime=stamp)
    else:
        if lease.instance_id != (old.get("holderIdentity") or ""):  # a change of holder
            spec["acquireTime"] = stamp
            if not created:
                transitions = min(transitions + 1, FOREVER_SECONDS)
        elif not old.get("acquireTime"):
            spec["acquireTime"] = stamp
        spec["holderIdentity"] = lease.instance_id
        spec["leaseDurationSeconds"] = lease_seconds(lease.expires, now)
    spec["renewTime"] = stamp
    spec["leaseTransitions"] = transitions
    return spec


def _annotations(
    current: Mapping[str, str] | None, state: LockState, meta: Mapping[str, str | None]
) -> dict[str, str]:
    out = dict(current or {})
    own: dict[str, str | None] = {
        NAME_KEY: state.name,
        TYPE_KEY: state.lock_type,
        TAGS_KEY: json.dumps(list(state.tags), separators=(",", ":")) if state.tags else None,
    }
    for key, value in {**own, **meta}.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def new_lease(
    object_name: str,
    namespace: str,
    state: LockState,
    meta: Mapping[str, str | None],
    now: datetime,
) -> dict[str, Any]:
    """A new Lease holding ``state``, written at server time ``now``."""
    annotations = _annotations(None, state, meta)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": object_name,
            "namespace": namespace,
            "labels": labelled({LABEL: ""}, state, annotations),
            "annotations": annotations,
        },
        "spec": _spec({}, state, now, created=True),
    }


def updated_lease(object_name: str, effect: Replace, now: datetime) -> dict[str, Any]:
    """The Lease that was read, with ``effect``'s state written at server time ``now``."""
    obj: dict[str, Any] = dict(effect.base.raw or {})
    metadata = obj["metadata"] = dict(obj.get("metadata") or {})
    metadata["resourceVersion"] = effect.version
    metadata.setdefault("name", object_name)
    labels = dict(metadata.get("labels") or {})
    labels.setdefault(LABEL, "")
    metadata.pop("managedFields", None)  # omitted: the server keeps its own
    metadata["annotations"] = _annotations(metadata.get("annotations"), effect.state, effect.meta)
    metadata["labels"] = labelled(labels, effect.state, metadata["annotations"])
    old = obj.get("spec")
    base = effect.base.state
    holder = next(iter(effect.state.leases), None)
    read = base.leases.get(holder) if base is not None and holder is not None else None
    obj["spec"] = _spec(
        old if isinstance(old, Mapping) else {}, effect.state, now, created=False, read=read
    )
    obj.setdefault("apiVersion", "coordination.k8s.io/v1")
    obj.setdefault("kind", "Lease")
    return obj
