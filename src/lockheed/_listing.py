"""Lock snapshots for listing, and their filtering by a Condition (no I/O).

A locker lists its objects in one paginated request (the ConfigMap locker with
the label selector ``lockheed/lock``); filtering happens here, since a
condition looks inside the JSON state. Malformed lock objects are listed with
their ``error`` and never match a condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ._conditions import Condition, LockView
from ._core import TOKEN_HOLDER_KEY, TOKEN_KEY
from ._shared_core import EXCLUSIVE_KEY, KINDS, SEMAPHORE, read_limit, read_tokens
from ._state import NEVER, Record

__all__ = ["Holder", "LockInfo", "select"]


@dataclass(frozen=True)
class Holder:
    instance_id: str
    expires: datetime | None  # None: never expires
    token: int | None = None  # this holder's fencing token (shared locks, semaphores)
    exclusive: bool = False  # the exclusive holder of a shared lock


@dataclass(frozen=True)
class LockInfo:
    """A read-only snapshot of one lock."""

    name: str
    lock_type: str
    holders: tuple[Holder, ...]
    tags: tuple[str, ...]
    fencing_token: int | None
    version: str
    error: str | None = None
    limit: int | None = None  # a semaphore's limit

    @property
    def acquired(self) -> bool:
        return bool(self.holders)


def _info(record: Record, earliest: datetime) -> LockInfo:
    state = record.state
    if state is None:
        return LockInfo(record.name, "", (), (), None, record.version, record.error)
    live = state.live_leases(earliest)
    if state.lock_type in KINDS:
        tokens = read_tokens(record.meta)
        ex = record.meta.get(EXCLUSIVE_KEY)
        shared = tuple(
            Holder(
                le.instance_id,
                None if le.expires >= NEVER else le.expires,
                tokens.get(le.instance_id),
                le.instance_id == ex,
            )
            for le in live
        )
        known = [h.token for h in shared if h.token is not None]
        limit = read_limit(record.meta) if state.lock_type == SEMAPHORE else None
        return LockInfo(
            record.name,
            state.lock_type,
            shared,
            state.tags,
            max(known) if known else None,
            record.version,
            limit=limit,
        )
    holders = tuple(
        Holder(le.instance_id, None if le.expires >= NEVER else le.expires) for le in live
    )
    token = None
    if record.meta.get(TOKEN_HOLDER_KEY) in {h.instance_id for h in holders}:
        try:
            token = int(record.meta.get(TOKEN_KEY, ""))
        except ValueError:
            token = None
    return LockInfo(record.name, state.lock_type, holders, state.tags, token, record.version)


def select(records: list[Record], earliest: datetime, where: Condition | None) -> list[LockInfo]:
    """Snapshots of ``records`` (sorted by name) whose state matches ``where``;
    a lease is live while ``earliest`` (the server's time) is before its expiry."""
    out = []
    for record in records:
        info = _info(record, earliest)
        if where is not None:
            if info.error is not None:
                continue
            view = LockView(frozenset(info.tags), info.acquired, len(info.holders), info.lock_type)
            if not where.matches(view):
                continue
        out.append(info)
    return sorted(out, key=lambda i: i.name)
