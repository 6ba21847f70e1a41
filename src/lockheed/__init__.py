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
"""

from ._conditions import Condition, Field, Operation, acquired, all_of, any_of, tags_contain
from ._configmap import ConfigMapLocker
from ._errors import (
    LockBackendError,
    LockConflict,
    LockError,
    LockForbidden,
    LockLost,
    LockNotHeld,
    LockStateError,
    LockTimeout,
)
from ._events import Event, EventCode
from ._listing import Holder, LockInfo, list_locks
from ._lock import Lock
from ._locker import Locker
from ._memory import MemoryLocker

__all__ = [
    "Condition",
    "ConfigMapLocker",
    "Event",
    "EventCode",
    "Field",
    "Holder",
    "Lock",
    "LockBackendError",
    "LockConflict",
    "LockError",
    "LockForbidden",
    "LockInfo",
    "LockLost",
    "LockNotHeld",
    "LockStateError",
    "LockTimeout",
    "Locker",
    "MemoryLocker",
    "Operation",
    "acquired",
    "all_of",
    "any_of",
    "list_locks",
    "tags_contain",
]
