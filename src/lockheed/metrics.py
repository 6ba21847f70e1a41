"""Prometheus metrics of lockheed's locks, and Kubernetes Events on takeover and loss.

Both are off by default and then cost nothing: ``import lockheed`` does not
import this module, this module does not import prometheus_client until
:func:`enable` is called, and a lock with nothing enabled only checks for an
observer at the few places where something happens. Install the extra with
``pip install 'lockheed[metrics]'``.

    import lockheed.metrics

    lockheed.metrics.enable()                      # every locker, the default registry
    lockheed.metrics.enable(registry, locker=locker, lock_names=True)
    lockheed.metrics.enable_events(locker)         # Kubernetes Events for this locker

Metrics (labels in braces; ``lock``, the lock's name, only with ``lock_names=True``,
because every lock name is a time series of its own):

* ``lockheed_acquire_wait_seconds{lock}``: histogram of how long a
  successful acquire took, from the call to holding the lock;
* ``lockheed_acquisitions_total{lock}``: successful acquires;
* ``lockheed_handoffs_total{lock}``: acquires handed over in line by the
  previous holder's release (no write of the waiter's own);
* ``lockheed_takeovers_total{lock}``: forced acquires (``with_force``) that
  removed another instance's live lease;
* ``lockheed_locks_held{lock}``: locks held by this process now (gauge);
* ``lockheed_losses_total{lock,cause}``: held locks lost, by cause:
  ``taken_over``, ``lease_gone``, ``deleted``, ``expired``, ``unreadable``,
  ``renewal_stopped``, ``other``;
* ``lockheed_renewal_failures_total{lock}``: renewals that failed (each is
  retried until the loss deadline);
* ``lockheed_api_requests_total{verb,kind,status}``: Kubernetes API requests
  by verb (get, list, create, update, watch), kind of object (configmaps,
  leases, events) and HTTP status (``error`` when no answer came; a watch
  counts once, when it opens or fails to).

Failure semantics: :func:`enable` raises :class:`MetricsUnavailable` (a
:class:`~lockheed.LockError` and an ``ImportError``) when prometheus_client
is not installed, ``TypeError`` for something that is not a registry or a
locker, and ``ValueError`` when the registry already holds metrics of these
names that lockheed did not make, or lockheed's with the other
``lock_names`` (nothing is registered then). Enabling the same registry
again returns the same :class:`LockMetrics` (a lock is counted once however
it is enabled). Neither metrics nor Events ever change what a lock does:
an observer that fails is logged and ignored; an Event that cannot be
created is logged (see :func:`enable_events`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import _observe
from ._errors import LockError
from ._kubecfg import KubeConfigSource

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from ._kube_events import KubeEvents

__all__ = [
    "LockMetrics",
    "MetricsUnavailable",
    "disable",
    "disable_events",
    "enable",
    "enable_events",
]

#: The acquire wait histogram's buckets, in seconds: an uncontended acquire
#: takes milliseconds, a waiter in line up to a holder's whole lease.
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class MetricsUnavailable(LockError, ImportError):
    """prometheus_client is not installed: ``pip install 'lockheed[metrics]'``."""


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise MetricsUnavailable(
            "lockheed.metrics needs prometheus_client: pip install 'lockheed[metrics]'"
        ) from exc
    return prometheus_client


class _Held:
    """The ``lockheed_locks_held`` gauge, read from the locks themselves at each
    scrape (a lock stops counting the moment its ``held`` turns False)."""

    def __init__(self, lock_names: bool):
        self.lock_names = lock_names
        self.locks: weakref.WeakSet[Any] = weakref.WeakSet()
        self.mutex = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        with self.mutex:
            locks = list(self.locks)
        labels = ["lock"] if self.lock_names else []
        family = GaugeMetricFamily(
            "lockheed_locks_held", "Locks held by this process now.", labels=labels
        )
        if not self.lock_names:
            family.add_metric([], sum(1 for lock in locks if lock.held))
        else:
            counts: dict[str, int] = {}
            for lock in locks:
                counts[lock.name] = counts.get(lock.name, 0) + (1 if lock.held else 0)
            for name, count in sorted(counts.items()):
                family.add_metric([name], count)
        yield family

    def describe(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        labels = ["lock"] if self.lock_names else []
        yield GaugeMetricFamily("lockheed_locks_held", "Locks held.", labels=labels)


class LockMetrics:
    """lockheed's metrics in one registry: an observer of locks and of API requests."""

    def __init__(self, registry: CollectorRegistry, lock_names: bool):
        prom = _prometheus()
        self.registry = registry
        self.lock_names = lock_names
        lock = ("lock",) if lock_names else ()
        self.wait = prom.Histogram(
            "lockheed_acquire_wait_seconds",
            "Time from calling acquire to holding the lock, for successful acquires.",
            lock,
            buckets=WAIT_BUCKETS,
            registry=None,
        )
        self.acquisitions = prom.Counter(
            "lockheed_acquisitions", "Successful acquires.", lock, registry=None
        )
        self.handoffs = prom.Counter(
            "lockheed_handoffs",
            "Acquires handed over in line by the previous holder's release.",
            lock,
            registry=None,
        )
        self.takeovers = prom.Counter(
            "lockheed_takeovers",
            "Forced acquires that removed another instance's live lease.",
            lock,
            registry=None,
        )
        self.losses = prom.Counter(
            "lockheed_losses", "Held locks lost, by cause.", (*lock, "cause"), registry=None
        )
        self.renewal_failures = prom.Counter(
            "lockheed_renewal_failures", "Renewals that failed.", lock, registry=None
        )
        self.requests = prom.Counter(
            "lockheed_api_requests",
            "Kubernetes API requests by verb, kind of object and HTTP status.",
            ("verb", "kind", "status"),
            registry=None,
        )
        self._held = _Held(lock_names)
        if not lock_names:
            for cause in _observe.CAUSES:  # every cause's series exists from the start
                self.losses.labels(cause=cause)
        collectors = [
            self.wait,
            self.acquisitions,
            self.handoffs,
            self.takeovers,
            self._held,
            self.losses,
            self.renewal_failures,
            self.requests,
        ]
        done: list[Any] = []
        try:
            for collector in collectors:
                registry.register(collector)
                done.append(collector)
        except ValueError as exc:
            for collector in done:
                registry.unregister(collector)
            raise ValueError(f"cannot register lockheed's metrics in {registry!r}: {exc}") from None

    def __repr__(self) -> str:
        return f"LockMetrics(lock_names={self.lock_names})"

    def _of(self, metric: Any, lock: Any) -> Any:
        return metric.labels(lock.name) if self.lock_names else metric

    # ------------------------------------------------------------ observer

    def acquired(
        self, lock: Any, wait: float, handed_off: bool, taken_from: tuple[str, ...]
    ) -> None:
        self._of(self.wait, lock).observe(max(0.0, wait))
        self._of(self.acquisitions, lock).inc()
        if handed_off:
            self._of(self.handoffs, lock).inc()
        if taken_from:
            self._of(self.takeovers, lock).inc()
        with self._held.mutex:
            self._held.locks.add(lock)

    def released(self, lock: Any) -> None:
        with self._held.mutex:
            self._held.locks.discard(lock)

    def lost(self, lock: Any, cause: str, error: BaseException) -> None:
        labels = (lock.name, cause) if self.lock_names else (cause,)
        self.losses.labels(*labels).inc()
        with self._held.mutex:
            self._held.locks.discard(lock)

    def renewal_failed(self, lock: Any) -> None:
        self._of(self.renewal_failures, lock).inc()

    def request(self, verb: str, kind: str, status: str) -> None:
        self.requests.labels(verb, kind, status).inc()


_by_registry: weakref.WeakKeyDictionary[Any, LockMetrics] = weakref.WeakKeyDictionary()
_making = threading.Lock()


def _check_locker(locker: Any) -> None:
    if locker is not None and not (hasattr(locker, "object_name") and hasattr(locker, "clock")):
        raise TypeError(f"expected a lockheed locker, not {type(locker).__name__}")


def enable(
    registry: CollectorRegistry | None = None,
    *,
    locker: Any = None,
    lock_names: bool = False,
) -> LockMetrics:
    """Count what locks do in ``registry`` (prometheus_client's default registry
    when None): the locks of ``locker`` and the requests it makes, or of every
    locker of this process when ``locker`` is None. ``lock_names`` adds a
    ``lock`` label (a time series per lock name: use it for a few long-lived
    locks, not for names made up per job).
    """
    prom = _prometheus()
    _check_locker(locker)
    if registry is None:
        registry = prom.REGISTRY
    elif not isinstance(registry, prom.CollectorRegistry):
        raise TypeError(f"registry must be a prometheus_client CollectorRegistry, not {registry!r}")
    lock_names = bool(lock_names)
    with _making:
        metrics = _by_registry.get(registry)
        if metrics is None:
            metrics = _by_registry[registry] = LockMetrics(registry, lock_names)
        elif metrics.lock_names != lock_names:
            raise ValueError(
                f"lockheed's metrics are already in this registry with lock_names="
                f"{metrics.lock_names}; a registry has them one way"
            )
    _observe.attach(locker, metrics)
    return metrics


def disable(locker: Any = None) -> None:
    """Stop counting for ``locker`` (None: the process-wide metrics). The metrics
    stay in their registries with the counts so far."""
    _check_locker(locker)
    _observe.detach(locker, LockMetrics)


def enable_events(
    locker: Any, *, config: KubeConfigSource = None, component: str = "lockheed"
) -> KubeEvents:
    """Create Kubernetes Events for ``locker``'s locks: ``LockTakenOver`` when a
    forced acquire removes another instance's live lease, ``LockLost`` when a
    held lock is lost. They are created in the background (the lock never waits
    for them) with ``config`` (by default the locker's own configuration), which
    needs ``create`` on ``events`` in the locker's namespace; one that cannot be
    created is logged on the ``lockheed`` logger and changes nothing else.
    Returns the emitter (``flush()`` waits until what is queued was sent).
    Enabling again returns the same emitter.
    """
    from ._kube_events import KubeEvents

    for member in _observe.attached(locker):
        if isinstance(member, KubeEvents):
            return member
    events = KubeEvents(locker, config, component=component)
    _observe.attach(locker, events)
    return events


def disable_events(locker: Any) -> None:
    """Stop creating Events for ``locker``'s locks (after those already queued)."""
    from ._kube_events import KubeEvents

    for events in _observe.detach(locker, KubeEvents):
        events.close()
