# Generated from lockheed/_async/listing.py by scripts/unasync.py: do not edit.
"""Listing the locks of a locker, filtered by a Condition."""

from __future__ import annotations

import inspect
from typing import Any

from .._conditions import Condition
from .._limits import check_locker
from .._listing import LockInfo, select

__all__ = ["list_locks"]


def list_locks(locker: Any, where: Condition | None = None) -> list[LockInfo]:
    """Every lock of ``locker`` (sorted by name) whose state matches ``where``.

    One paginated LIST for the ConfigMap and Lease lockers; see :class:`~lockheed.LockInfo`.
    """
    check_locker(locker, inspect.iscoroutinefunction(list_locks), "list_locks")
    records = locker.list_records()
    earliest, _ = locker.clock.bounds()
    return select(records, earliest, where)
