# Generated from lockheed/_async/semaphore.py by scripts/unasync.py: do not edit.
"""Semaphores: a lock that at most ``limit`` instances hold at once.

An :class:`Semaphore` is an :class:`~lockheed.Lock` whose lock is of
type ``semaphore`` (decided by :mod:`lockheed._shared_core`): every holder has
its own lease, renewal, fencing token and loss notice, exactly as a lock's
holder has. The limit is stored with the lock when it is first created; an
instance asking for another limit, or for the same name as a mutex or a
shared lock, gets :class:`~lockheed.LockTypeError` and changes nothing.

Failure semantics are the lock's (:mod:`lockheed._async.lock`).
"""

from __future__ import annotations

from typing import Any

from .lock import Lock

__all__ = ["Semaphore"]


class Semaphore(Lock):
    """A semaphore named ``name`` kept by ``locker``: at most ``limit`` holders.

    ``limit`` is an integer from 1 (ValueError otherwise) and must agree with
    the limit stored with the lock. Directives, ``acquire``/``release`` and the
    context manager are the lock's; ``with_mode`` does not apply.
    """

    def __init__(self, name: str, locker: Any, limit: int, *, instance_id: str | None = None):
        super().__init__(name, locker, instance_id=instance_id)
        self._set_limit(limit)

    @property
    def limit(self) -> int:
        """How many holders the semaphore admits at once."""
        assert self._limit is not None
        return self._limit

    def __enter__(self) -> Semaphore:
        self.acquire()
        return self
