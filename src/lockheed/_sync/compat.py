"""Sync twins of :mod:`lockheed._async.compat`."""

from __future__ import annotations

import threading
import time
from typing import TypeVar

T = TypeVar("T")

sleep = time.sleep


def try_acquire(mutex: threading.RLock) -> bool:
    """Take ``mutex`` if no other thread holds it, without waiting."""
    return mutex.acquire(blocking=False)


def shield(value: T) -> T:
    """Without an event loop nothing cancels a call half-way: the value as it is."""
    return value
