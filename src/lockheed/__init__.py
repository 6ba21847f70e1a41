"""lockheed: distributed locks kept in Kubernetes.

Each lock is one object in the cluster (a ConfigMap in Go lockheed's format),
changed only by writes conditional on its resourceVersion. A lock is a mutex
with a lease: a duration after which it expires unless renewed (by a
background thread when a renew interval is set). Losing a held lock is never
silent: ``held`` turns False, ``on_lost`` callbacks fire and ``release``
raises :class:`LockLost`. Every acquisition carries a fencing token that
strictly increases each time the lock changes hands.

    from lockheed import ConfigMapLocker, Lock

    lock = Lock("nightly-report", ConfigMapLocker()).with_duration(30).with_renew_interval(9)
    with lock:
        ...

Locks can also be kept in ``coordination.k8s.io/v1`` Leases, the objects of
client-go's leader election (:class:`LeaseLocker`, :class:`AsyncLeaseLocker`).

The asyncio API (:class:`AsyncLock`, :class:`AsyncConfigMapLocker`,
:class:`AsyncMemoryLocker`, :func:`alist_locks`) has the same semantics and
adds ``lock.guard()``, a block cancelled as soon as the lock is lost.

Besides mutexes, a lock can be shared (``Lock(...).with_shared()`` for the
readers, ``.with_exclusive()`` for the writers) and :class:`Semaphore` /
:class:`AsyncSemaphore` admit at most ``limit`` holders at once.

:class:`LeaderElector` and :class:`AsyncLeaderElector` elect one leader among
the holders of a lock, with client-go's timing and callbacks.

Every public name is defined in a private module but belongs to ``lockheed``:
its ``__module__`` is ``"lockheed"``, so reprs, tracebacks and pickles say
``lockheed.Lock``, ``lockheed.LockTimeout``, and stay valid whatever the
private layout. ``lockheed.__version__`` is the installed distribution's
version (read on first use, so importing lockheed does not load
:mod:`importlib.metadata`). The asyncio API and the leader electors are
imported on first use of their names too, so a program that only takes locks
from threads never loads :mod:`asyncio`.
"""

from typing import TYPE_CHECKING, Any

from ._conditions import (
    Condition,
    Field,
    Operation,
    acquired,
    all_of,
    any_of,
    holders,
    lock_type,
    tags_contain,
)
from ._errors import (
    LockBackendError,
    LockConfigError,
    LockConflict,
    LockError,
    LockForbidden,
    LockLost,
    LockNotHeld,
    LockStateError,
    LockTimeout,
    LockTypeError,
    LockUnauthorized,
)
from ._events import Event, EventCode
from ._listing import Holder, LockInfo
from ._locker import AsyncLocker, Locker
from ._sync.configmap import ConfigMapLocker
from ._sync.lease import LeaseLocker
from ._sync.listing import list_locks
from ._sync.lock import Lock
from ._sync.memory import MemoryLocker
from ._sync.semaphore import Semaphore

# Imported on first use (PEP 562): the asyncio API (asyncio itself and the
# async shells) and the leader electors, which a thread that only takes a lock
# never needs. Name -> private module.
_LAZY = {
    "AsyncConfigMapLocker": "._async.configmap",
    "AsyncLeaderElector": "._async.election",
    "AsyncLeaseLocker": "._async.lease",
    "AsyncLock": "._async.lock",
    "AsyncMemoryLocker": "._async.memory",
    "AsyncSemaphore": "._async.semaphore",
    "LeaderElector": "._sync.election",
    "alist_locks": "._async.listing",
}

if TYPE_CHECKING:
    from ._async.configmap import AsyncConfigMapLocker
    from ._async.election import AsyncLeaderElector
    from ._async.lease import AsyncLeaseLocker
    from ._async.listing import alist_locks
    from ._async.lock import AsyncLock
    from ._async.memory import AsyncMemoryLocker
    from ._async.semaphore import AsyncSemaphore
    from ._sync.election import LeaderElector

__all__ = [
    "AsyncConfigMapLocker",
    "AsyncLeaderElector",
    "AsyncLeaseLocker",
    "AsyncLock",
    "AsyncLocker",
    "AsyncMemoryLocker",
    "AsyncSemaphore",
    "Condition",
    "ConfigMapLocker",
    "Event",
    "EventCode",
    "Field",
    "Holder",
    "LeaderElector",
    "LeaseLocker",
    "Lock",
    "LockBackendError",
    "LockConfigError",
    "LockConflict",
    "LockError",
    "LockForbidden",
    "LockInfo",
    "LockLost",
    "LockNotHeld",
    "LockStateError",
    "LockTimeout",
    "LockTypeError",
    "LockUnauthorized",
    "Locker",
    "MemoryLocker",
    "Operation",
    "Semaphore",
    "acquired",
    "alist_locks",
    "all_of",
    "any_of",
    "holders",
    "list_locks",
    "lock_type",
    "tags_contain",
]

for _name in __all__:
    if _name not in _LAZY:
        globals()[_name].__module__ = __name__
del _name

_UNKNOWN_VERSION = "0+unknown"

__version__: str  # bound on first use by __getattr__

if not TYPE_CHECKING:  # so that type checkers still catch misspelt names

    def __getattr__(name: str) -> Any:
        if name in _LAZY:
            import importlib
            import sys

            importlib.import_module(_LAZY[name], __name__)
            for lazy, module in _LAZY.items():  # this one and any its module brought in
                if (loaded := sys.modules.get(__name__ + module)) is not None:
                    obj = getattr(loaded, lazy)
                    obj.__module__ = __name__
                    globals()[lazy] = obj
            return globals()[name]
        if name == "__version__":
            from importlib.metadata import PackageNotFoundError, version

            try:
                found = version(__name__)
            except PackageNotFoundError:  # a source tree that is not installed
                found = _UNKNOWN_VERSION
            globals()["__version__"] = found
            return found
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))


del TYPE_CHECKING, Any
