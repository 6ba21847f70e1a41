"""What the benchmark measured: plain dataclasses, and the statistics over them."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "Contention",
    "ElectionRun",
    "Fairness",
    "HeldMany",
    "ImportTime",
    "Latency",
    "Listing",
    "NotMeasured",
    "OpCount",
    "Renewal",
    "Requests",
    "Results",
    "median",
    "percentile",
]


def percentile(samples: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linearly interpolated between closest ranks."""
    data = sorted(samples)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def median(samples: Iterable[float]) -> float:
    data = list(samples)
    return statistics.median(data) if data else math.nan


@dataclass(frozen=True)
class NotMeasured:
    """A figure a system cannot give, or that failed; ``reason`` says which."""

    reason: str


_VERB_ORDER = ("LIST", "GET", "POST", "PUT", "PATCH", "DELETE", "WATCH")


@dataclass(frozen=True)
class Requests:
    """API requests by ``"<resource> <VERB>"``, as counted by the API server."""

    counts: Mapping[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.counts.values())

    def scaled(self, factor: float) -> Requests:
        return Requests({k: v * factor for k, v in self.counts.items()})

    def by_verb(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, value in self.counts.items():
            verb = key.split(" ", 1)[-1]
            out[verb] = out.get(verb, 0.0) + value
        order = {v: i for i, v in enumerate(_VERB_ORDER)}
        return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))

    def resources(self) -> list[str]:
        return sorted({k.split(" ", 1)[0] for k, v in self.counts.items() if v})

    def describe(self) -> str:
        """``"GET 1 + PUT 1"`` (whole numbers where they are whole)."""
        parts = [f"{verb} {_num(n)}" for verb, n in self.by_verb().items() if n]
        return " + ".join(parts) if parts else "none"

    def short(self) -> str:
        """``"2 (GET PUT)"``: the total, and the verbs with their counts when above one."""
        verbs = [
            (f"{_num(n)}{verb}" if round(n, 2) != 1 else verb)
            for verb, n in self.by_verb().items()
            if n
        ]
        return f"{_num(self.total)} ({' '.join(verbs)})" if verbs else "0"


def _num(value: float) -> str:
    if abs(value - round(value)) < 0.005:
        return str(round(value))
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


@dataclass(frozen=True)
class OpCount:
    """Requests of one operation: the repeat with the median total."""

    requests: Requests
    repeats: int
    totals: tuple[float, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Latency:
    """Latency samples in seconds."""

    samples: tuple[float, ...]
    note: str = ""

    @property
    def p50(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)


@dataclass(frozen=True)
class Fairness:
    """Who was served when, among greedy contenders on one lock.

    Every acquisition has two stamps on one monotonic clock: ``asked`` (the
    contender began to want the lock: its first acquire call since its last
    acquisition) and ``got`` (its acquire returned). An acquisition A
    *overtakes* when some acquisition B asked earlier and got later
    (``B.asked < A.asked`` and ``B.got > A.got``): A was served while B, who
    asked first, was still waiting. ``overtakes`` counts such A, so it is at
    most ``acquisitions``.
    """

    acquisitions: int  # every acquisition of the run, the ones after the window included
    contenders: int
    overtakes: int
    jain: float  # Jain's index of acquisitions per contender, inside the window
    waits: tuple[float, ...]  # got - asked of the acquisitions inside the window, seconds

    @property
    def overtake_share(self) -> float:
        return self.overtakes / self.acquisitions if self.acquisitions else math.nan


@dataclass(frozen=True)
class Contention:
    """Contenders taking turns on one lock for a fixed window."""

    contenders: int
    window: float
    acquisitions: int  # acquisitions completed inside the window
    handoffs: int  # of those, the ones where the holder changed
    all_acquisitions: int  # including the ones after the window closed (for requests)
    requests: Requests  # every request from the start signal until all contenders exited
    conflicts: int = 0  # acquires that ended in LockConflict (not LockTimeout) at the window's end
    mode: str = ""
    fairness: Fairness | None = None  # None: the contenders do not stamp when they asked
    steal: float | None = None  # share of the host's CPU time stolen in the window (None: unknown)

    @property
    def handoffs_per_s(self) -> float:
        return self.handoffs / self.window

    @property
    def acquisitions_per_s(self) -> float:
        return self.acquisitions / self.window

    @property
    def requests_per_acquisition(self) -> float:
        return self.requests.total / max(1, self.all_acquisitions)

    @property
    def requests_per_handoff(self) -> float:
        return self.requests.total / self.handoffs if self.handoffs else math.inf


@dataclass(frozen=True)
class Renewal:
    """Requests while ``locks`` locks are held and renewed every ``interval`` s."""

    locks: int
    interval: float
    window: float
    requests: Requests
    note: str = ""

    @property
    def per_lock_per_s(self) -> float:
        return self.requests.total / self.window / self.locks


@dataclass(frozen=True)
class ElectionRun:
    """One leader-election system: time to a new leader (seconds from the old
    leader's signal to the candidate leading), and the requests of a steady
    leader (``locks`` = 1, ``interval`` = the retry period)."""

    timing: str
    after_exit: Latency | NotMeasured
    after_kill: Latency | NotMeasured
    leader: Renewal | NotMeasured
    with_candidate: Renewal | NotMeasured


@dataclass(frozen=True)
class HeldMany:
    """One process holding many locks, renewed by its one background thread."""

    locks: int
    duration: float
    interval: float
    window: float
    cpu_seconds: float
    rss_mb: float
    hwm_mb: float
    acquire_seconds: float
    bare_put_cpu: float  # CPU seconds of one bare PUT with the same HTTP client
    renewals: int  # RENEW_OK events in the window, as the process saw them
    lost: int
    requests: Requests  # what the API server counted in the window

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.window

    @property
    def cpu_per_renewal(self) -> float:
        return self.cpu_seconds / max(1, self.renewals)

    @property
    def steady_share(self) -> float:
        """CPU share once every lock is renewed once per interval."""
        return self.cpu_per_renewal * self.locks / self.interval


@dataclass(frozen=True)
class Listing:
    """Listing ``locks`` lock objects: lockheed against kubectl, same server."""

    locks: int
    matched: int
    lockheed: tuple[float, ...]  # list_locks(locker, tags_contain(...)), seconds
    lockheed_async: tuple[float, ...]
    cli: tuple[float, ...]  # `python -m lockheed list --tag ...`, a fresh process
    kubectl: tuple[float, ...] | NotMeasured
    lockheed_requests: Requests
    kubectl_requests: Requests | None


@dataclass(frozen=True)
class ImportTime:
    """``python -X importtime -c 'import M'``: cumulative microseconds, and wall seconds."""

    module: str
    version: str
    importtime_us: tuple[float, ...]
    wall: tuple[float, ...]


@dataclass
class Results:
    """Everything one run measured, keyed by system key."""

    meta: dict[str, str] = field(default_factory=dict)
    systems: dict[str, str] = field(default_factory=dict)  # key -> label
    settings: dict[str, str] = field(default_factory=dict)  # key -> settings used
    background: Requests = field(default_factory=Requests)  # per second, idle server
    ops: dict[str, dict[str, OpCount | NotMeasured]] = field(default_factory=dict)
    cycle: dict[str, Latency | NotMeasured] = field(default_factory=dict)
    handoff: dict[str, Latency | NotMeasured] = field(default_factory=dict)
    raw_put: Latency | NotMeasured = NotMeasured("not run")
    contention: dict[str, dict[int, Contention | NotMeasured]] = field(default_factory=dict)
    # The fewest contenders again, run right after the most (lockheed's fair rows):
    # the ratio of the two ends compares the larger run with the mean of the
    # smaller one before and after it, so the host's drift meanwhile cancels.
    contention_again: dict[str, Contention | NotMeasured] = field(default_factory=dict)
    contention_again_after: int = 0  # the contender count those runs followed
    renewal: dict[str, Renewal | NotMeasured] = field(default_factory=dict)
    held_many: HeldMany | NotMeasured = NotMeasured("not run")
    election: dict[str, ElectionRun | NotMeasured] = field(default_factory=dict)
    held_many_httpx2: HeldMany | NotMeasured = NotMeasured("not run")  # LOCKHEED_HTTP1=0
    listing: list[Listing] | NotMeasured = NotMeasured("not run")
    imports: dict[str, ImportTime | NotMeasured] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
