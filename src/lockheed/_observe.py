"""The observer seam: how locks and the Kubernetes request layer tell metrics
(:mod:`lockheed.metrics`) and Kubernetes Events what happened.

Off by default, and then free: every call site asks :func:`of` for the
observer of its locker (or API client) and does nothing more when that is
None. Nothing here imports prometheus_client or anything outside lockheed.

Observers are attached process-wide (``owner`` None) or to one locker; a
lock's observers are its locker's and the process-wide ones, each told once.
The call sites are few: a lock acquired (with its wait, whether it was
handed over in line, and the live holders a forced write removed), released,
lost (with a small, fixed set of causes), a failed renewal, and each API
request (verb, kind of object, status).

Failure semantics: an observer never changes what a lock does. An observer
method that raises is logged on the ``lockheed`` logger and ignored, and the
other observers are still told.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

__all__ = [
    "CAUSES",
    "Observer",
    "attach",
    "cause_of",
    "detach",
    "of",
    "taken_from",
    "verb_of",
]

logger = logging.getLogger("lockheed")

# Why a held lock was lost (the ``cause`` of :meth:`Observer.lost`): a bounded set.
TAKEN_OVER = "taken_over"  # another instance holds it (a forced takeover, or Go's)
LEASE_GONE = "lease_gone"  # our lease was found expired or removed by someone else
DELETED = "deleted"  # the lock's object was deleted
EXPIRED = "expired"  # the loss deadline passed before a renewal succeeded
UNREADABLE = "unreadable"  # the stored state became unreadable
RENEWAL_STOPPED = "renewal_stopped"  # the renewer ended (the lock's event loop stopped)
OTHER = "other"
CAUSES = (TAKEN_OVER, LEASE_GONE, DELETED, EXPIRED, UNREADABLE, RENEWAL_STOPPED, OTHER)


class Observer(Protocol):
    """What an observer is told. ``lock`` is the :class:`~lockheed.Lock` or
    :class:`~lockheed.AsyncLock`. Methods are called on the thread (or event
    loop) where the thing happened, so they must be quick and must not block."""

    def acquired(
        self, lock: Any, wait: float, handed_off: bool, taken_from: tuple[str, ...]
    ) -> None:
        """An acquire succeeded after ``wait`` seconds; ``handed_off``: the previous
        holder's release handed it over in line; ``taken_from``: the live holders
        whose leases a forced write (``with_force``) removed."""

    def released(self, lock: Any) -> None:
        """A held lock was released."""

    def lost(self, lock: Any, cause: str, error: BaseException) -> None:
        """A held lock was lost; ``cause`` is one of :data:`CAUSES`."""

    def renewal_failed(self, lock: Any) -> None:
        """A renewal failed (it is retried until the loss deadline)."""

    def request(self, verb: str, kind: str, status: str) -> None:
        """An API request was answered with ``status`` (the HTTP status code, or
        ``error`` when no answer came); ``kind`` is the resource (``configmaps``)."""


class _Fanout:
    """Tells each of its observers, once each; one that raises is logged and skipped."""

    __slots__ = ("members",)

    def __init__(self, members: tuple[Any, ...]):
        self.members = members

    def _each(self, method: str, *args: Any) -> None:
        for member in self.members:
            try:
                getattr(member, method)(*args)
            except Exception:
                logger.exception("lockheed observer %r failed in %s", member, method)

    def acquired(
        self, lock: Any, wait: float, handed_off: bool, taken_from: tuple[str, ...]
    ) -> None:
        self._each("acquired", lock, wait, handed_off, taken_from)

    def released(self, lock: Any) -> None:
        self._each("released", lock)

    def lost(self, lock: Any, cause: str, error: BaseException) -> None:
        self._each("lost", lock, cause, error)

    def renewal_failed(self, lock: Any) -> None:
        self._each("renewal_failed", lock)

    def request(self, verb: str, kind: str, status: str) -> None:
        self._each("request", verb, kind, status)


#: The process-wide observers (None: none attached).
observer: _Fanout | None = None
_changing = threading.Lock()


def of(owner: object) -> Observer | None:
    """The observers of ``owner`` (a locker or an API client) and the process's,
    or None when there are none: the one check a call site makes."""
    own: _Fanout | None = getattr(owner, "observer", None)
    if own is None:
        return observer
    if observer is None:
        return own
    extra = tuple(m for m in observer.members if m not in own.members)
    return _Fanout(own.members + extra) if extra else own


def _targets(owner: object) -> list[object]:
    """``owner`` and the API client it makes its requests with, if any."""
    api = getattr(owner, "api", None)
    return [owner] if api is None else [owner, api]


def attach(owner: object | None, member: Any) -> None:
    """Tell ``member`` what happens to ``owner``'s locks (None: every locker's)."""
    global observer
    with _changing:
        current = observer if owner is None else getattr(owner, "observer", None)
        members = () if current is None else current.members
        if member in members:
            return
        fanout = _Fanout((*members, member))
        if owner is None:
            observer = fanout
            return
        for target in _targets(owner):
            target.observer = fanout  # type: ignore[attr-defined]


def detach(owner: object | None, kind: type) -> list[Any]:
    """Stop telling ``owner``'s observers of type ``kind``; return them."""
    global observer
    with _changing:
        current = observer if owner is None else getattr(owner, "observer", None)
        if current is None:
            return []
        gone = [m for m in current.members if isinstance(m, kind)]
        kept = tuple(m for m in current.members if not isinstance(m, kind))
        fanout = _Fanout(kept) if kept else None
        if owner is None:
            observer = fanout
        else:
            for target in _targets(owner):
                target.observer = fanout  # type: ignore[attr-defined]
        return gone


def attached(owner: object | None) -> tuple[Any, ...]:
    """The observers attached to ``owner`` (None: the process-wide ones)."""
    current = observer if owner is None else getattr(owner, "observer", None)
    return () if current is None else current.members


def cause_of(error: BaseException) -> str:
    """The cause of a loss, from the :class:`~lockheed.LockLost` that declared it."""
    if getattr(error, "holder", None):
        return TAKEN_OVER
    text = str(error)
    for needle, cause in (
        ("object was deleted", DELETED),
        ("expired or was removed", LEASE_GONE),
        ("ran out", EXPIRED),
        ("became unreadable", UNREADABLE),
        ("renewal stopped", RENEWAL_STOPPED),
    ):
        if needle in text:
            return cause
    return OTHER


def taken_from(lock: Any, replaced: Any, handed_off: bool) -> tuple[str, ...]:
    """The other instances with a live lease in ``replaced``, the object a forced
    acquire's winning write replaced (a hand-off in line takes nothing)."""
    state = None if replaced is None or handed_off else replaced.state
    if state is None:
        return ()
    earliest, _ = lock.locker.clock.bounds()
    return tuple(
        lease.instance_id
        for lease in state.live_leases(earliest)
        if lease.instance_id != lock.instance_id
    )


def verb_of(method: str, path: str) -> str:
    """The Kubernetes verb of a plain request: a GET of the collection is a list."""
    if method == "GET":
        return "get" if path else "list"
    return {"POST": "create", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}.get(
        method, method.lower()
    )
