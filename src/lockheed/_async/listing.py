"""Listing the locks of a locker, filtered by a Condition."""

from __future__ import annotations

import inspect
from typing import Any

from .._conditions import Condition
from .._limits import check_locker
from .._listing import LockInfo, select

__all__ = ["alist_locks"]


async def alist_locks(locker: Any, where: Condition | None = None) -> list[LockInfo]:
    """Every lock of ``locker`` (sorted by name) whose state matches ``where``.

    One paginated LIST for the ConfigMap and Lease lockers; see :class:`~lockheed.LockInfo`.
    """
    check_locker(locker, inspect.iscoroutinefunction(alist_locks), "alist_locks")
    records = await locker.list_records()
    earliest, _ = locker.clock.bounds()
    return select(records, earliest, where)
