"""The exceptions lockheed raises.

Every error derives from :class:`LockError`, which carries the lock's name and,
where known, the instance that holds it. Errors from the HTTP client and the
Kubernetes API are translated into these at the locker boundary, so callers
never need to catch a transport library's exception types. All of them pickle,
so they can cross process boundaries (multiprocessing, concurrent.futures).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = [
    "LockBackendError",
    "LockConfigError",
    "LockConflict",
    "LockError",
    "LockForbidden",
    "LockLost",
    "LockNotHeld",
    "LockStateError",
    "LockTimeout",
    "LockTypeError",
    "LockUnauthorized",
]


class LockError(Exception):
    """Root of every lockheed error.

    ``lock`` is the lock's name (without the locker's prefix); ``holder`` is the
    instance ID that holds the lock, when the error is about someone else's lease.
    """

    def __init__(self, message: str, *, lock: str | None = None, holder: str | None = None):
        super().__init__(message)
        self.message = message
        self.lock = lock
        self.holder = holder

    def _kwargs(self) -> dict[str, Any]:
        return {"lock": self.lock, "holder": self.holder}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self._kwargs()))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[LockError], message: str, kwargs: dict[str, Any]) -> LockError:
    return cls(message, **kwargs)


class LockTimeout(LockError, TimeoutError):
    """The lock was not acquired before the timeout; ``expires`` is the holder's expiry."""

    def __init__(
        self,
        message: str,
        *,
        lock: str | None = None,
        holder: str | None = None,
        expires: datetime | None = None,
    ):
        super().__init__(message, lock=lock, holder=holder)
        self.expires = expires

    def _kwargs(self) -> dict[str, Any]:
        return {**super()._kwargs(), "expires": self.expires}


class LockLost(LockError):
    """The lease ran out, was taken over, released elsewhere, or its object deleted."""


class LockNotHeld(LockError, RuntimeError):
    """An operation that needs the lock (release, renew) was called while not holding it."""


class LockBackendError(LockError):
    """The backend could not be reached, or answered with an unexpected error.

    ``transient`` is True for failures that may go away by themselves (the
    connection refused, reset or timed out; HTTP 5xx; 429 Too Many Requests),
    and ``retry_after`` is the server's ``Retry-After`` in seconds, when it gave
    one. A waiting acquire rides out transient failures until its timeout.
    """

    def __init__(
        self,
        message: str,
        *,
        lock: str | None = None,
        holder: str | None = None,
        transient: bool = False,
        retry_after: float | None = None,
    ):
        super().__init__(message, lock=lock, holder=holder)
        self.transient = transient
        self.retry_after = retry_after

    def _kwargs(self) -> dict[str, Any]:
        return {**super()._kwargs(), "transient": self.transient, "retry_after": self.retry_after}


class LockConfigError(LockBackendError):
    """The Kubernetes configuration (a kubeconfig file, or the in-cluster service
    account) is missing or malformed; the message names the file and what is
    wrong, never a credential."""


class LockConflict(LockError):
    """Concurrent writers kept changing the lock object; the operation gave up."""


class LockStateError(LockError, ValueError):
    """The stored lock object is malformed or of a kind this lock cannot handle.

    lockheed never overwrites such an object unless a force condition matches it.
    """


class LockTypeError(LockStateError):
    """The lock exists as another kind (a mutex, a shared lock, a semaphore) or as a
    semaphore with another limit than this instance asks for. The type and the
    limit are fixed when the lock is first created; nothing is overwritten."""


class LockForbidden(LockError, PermissionError):
    """The API server refused a request; ``verb``, ``resource`` and ``namespace`` say
    which permission is missing."""

    def __init__(
        self,
        message: str,
        *,
        lock: str | None = None,
        holder: str | None = None,
        verb: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
    ):
        super().__init__(message, lock=lock, holder=holder)
        self.verb = verb
        self.resource = resource
        self.namespace = namespace

    def _kwargs(self) -> dict[str, Any]:
        return {
            **super()._kwargs(),
            "verb": self.verb,
            "resource": self.resource,
            "namespace": self.namespace,
        }


class LockUnauthorized(LockError, PermissionError):
    """The API server did not accept the credentials (HTTP 401): a login failure,
    such as an expired or revoked token or an unknown client certificate, not a
    missing permission (that is :class:`LockForbidden`)."""
