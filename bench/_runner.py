"""The order of a benchmark run, and what happens when one figure fails.

Import times are measured first, before the control plane starts, on a quiet
machine. Then the server starts, its idle background is measured, every
system gets a namespace of its own, and the figures run one after another so
that no two batches overlap in the server's counters. The one exception is
the leader-election hand-off, which waits out leases for half a minute: it
runs in a thread beside the other hand-off measurements, which count no
requests (it adds one request per elector every ``retry_period`` seconds).

A figure that fails is recorded as ``failed: <error>`` for that system, the
run goes on, and the error is listed among the report's problems.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from ._cluster import BenchCluster
from ._contention import contend
from ._election import CLIENT_GO_KEY, ELECTORS, election
from ._golockheed import GO_KEY, GO_LABEL, GO_REASON, GoLockheed, find_program
from ._imports import import_times
from ._kubectl import ensure_kubectl
from ._latency import raw_put
from ._listing import listing
from ._metrics import Meter
from ._ops import measure_ops
from ._renewal import held_many
from ._results import Latency, NotMeasured, Results
from ._sizes import Sizes
from ._systems import (
    Env,
    LeaderElection,
    LockheedAsync,
    LockheedLease,
    LockheedSync,
    Sherlock,
    System,
    Unsupported,
    package_version,
)

__all__ = [
    "FIGURES",
    "GO_KEY",
    "GO_REASON",
    "JUDGED",
    "RACING_KEY",
    "ROWS",
    "RW_KEY",
    "SEMAPHORE_KEY",
    "SYSTEM_LABELS",
    "Options",
    "run",
]

T = TypeVar("T")
# The systems the contention targets judge (bench/_report.py): their fair rows
# run their fewest contenders again after their most.
JUDGED = ("lockheed-sync", "lockheed-async")
ROWS = ("fair", "racing", "shared")  # the contention rows, for --rows
RACING_KEY = "lockheed-racing"  # lockheed (sync) contenders with with_fair(False)
SEMAPHORE_KEY = "lockheed-semaphore"  # lockheed (sync) contenders on a Semaphore of 4
RW_KEY = "lockheed-rw"  # lockheed (sync) contenders on a shared lock, 90% of them reading
SHARED_ROWS = ((SEMAPHORE_KEY, ("--limit", "4")), (RW_KEY, ("--readers", "0.9")))
FIGURES = (
    "imports",
    "ops",
    "cycle",
    "handoff",
    "renewal",
    "many",
    "contention",
    "election",
    "listing",
)
SYSTEM_LABELS = {
    "lockheed-sync": "lockheed (sync)",
    "lockheed-async": "lockheed (async)",
    "lockheed-lease": "lockheed (sync, Lease)",
    "sherlock": "sherlock KubernetesLock",
    "leaderelection": "kubernetes leader election",
    GO_KEY: GO_LABEL,
    RACING_KEY: "lockheed (sync), with_fair(False)",
    SEMAPHORE_KEY: "lockheed (sync), Semaphore of 4",
    RW_KEY: "lockheed (sync), shared lock, 90% shared",
}


@dataclass
class Options:
    sizes: Sizes
    kubeconfig: Path | None = None
    kubectl: Path | None = None
    only: tuple[str, ...] = FIGURES
    systems: tuple[str, ...] | None = None  # keys of the systems to measure (None: all)
    # The contention rows to run: "fair" (each system waiting in line), "racing"
    # (lockheed sync, with_fair(False)), "shared" (the semaphore and rw rows).
    rows: tuple[str, ...] = ("fair", "racing", "shared")
    log: Callable[[str], None] = field(default=lambda message: None)


class _Run:
    def __init__(self, options: Options):
        self.o = options
        self.sizes = options.sizes
        self.results = Results()
        self.began = time.monotonic()

    def log(self, message: str) -> None:
        self.o.log(f"[{time.monotonic() - self.began:6.1f}s] {message}")

    def attempt(self, what: str, action: Callable[[], T]) -> T | NotMeasured:
        """Run one measurement; an Unsupported or failure becomes NotMeasured."""
        try:
            return action()
        except Unsupported as exc:
            return NotMeasured(str(exc))
        except Exception as exc:
            self.results.problems.append(f"{what}: {exc!r}")
            self.log(f"FAILED {what}: {exc!r}\n{traceback.format_exc()}")
            return NotMeasured(f"failed: {exc!r}")

    def wanted(self, figure: str) -> bool:
        return figure in self.o.only


def _make_systems(run: _Run, cluster: BenchCluster) -> list[System]:
    makers: dict[str, tuple[type[System], Callable[[Env], System]]] = {
        "lockheed-sync": (LockheedSync, LockheedSync),
        "lockheed-async": (LockheedAsync, LockheedAsync),
        "lockheed-lease": (LockheedLease, LockheedLease),
        "sherlock": (Sherlock, Sherlock),
        "leaderelection": (
            LeaderElection,
            functools.partial(LeaderElection, election=run.sizes.election),
        ),
    }
    systems: list[System] = []
    chosen = run.o.systems
    for key, (kind, make) in makers.items():
        if chosen is not None and key not in chosen:
            run.results.settings[key] = "not measured: left out (--systems)"
            continue
        missing = [m for m in kind.requires if importlib.util.find_spec(m) is None]
        if missing:
            run.results.settings[key] = (
                f"not measured: {', '.join(missing)} not installed (pip install -e '.[bench]')"
            )
            continue
        env = Env(cluster.kubeconfig, cluster.namespace(key))
        system = run.attempt(f"setting up {key}", functools.partial(make, env))
        if isinstance(system, NotMeasured):
            run.results.settings[key] = system.reason
            continue
        run.results.settings[key] = system.settings()
        systems.append(system)
    if chosen is not None and GO_KEY not in chosen:
        run.results.settings[GO_KEY] = "not measured: left out (--systems)"
        return systems
    run.log("looking for the Go lockheed program (tests/golockheed)")
    program = find_program()
    if isinstance(program, str):
        run.results.settings[GO_KEY] = program
        return systems
    env = Env(cluster.kubeconfig, cluster.namespace(GO_KEY))
    go = run.attempt(f"setting up {GO_KEY}", functools.partial(GoLockheed, env, program))
    if isinstance(go, NotMeasured):
        run.results.settings[GO_KEY] = go.reason
    else:
        run.results.settings[GO_KEY] = go.settings()
        systems.append(go)
    return systems


def run(options: Options) -> Results:
    r = _Run(options)
    res = r.results
    res.systems = dict(SYSTEM_LABELS)
    s = r.sizes
    res.meta.update(
        {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": str(_cpus()),
            "sizes": "quick" if s.quick else "default",
            "lockheed": package_version("lockheed"),
        }
    )
    if r.wanted("imports"):
        r.log(f"import times ({s.import_runs} fresh interpreters each)")
        imports = r.attempt("import times", lambda: import_times(s.import_runs))
        res.imports = imports if isinstance(imports, dict) else {"lockheed": imports}

    r.log("starting the API server" if options.kubeconfig is None else "connecting")
    cluster = BenchCluster(options.kubeconfig).start()
    systems: list[System] = []
    try:
        res.meta["server"] = cluster.version()
        res.meta["cluster"] = (
            "local control plane (lockheed.testing), APIServerIdentity off"
            if cluster.own
            else f"existing cluster from {options.kubeconfig}"
        )
        http = cluster.http()
        meter = Meter(http)
        res.background = meter.measure_background(0.5 if s.quick else 3.0)
        systems = _make_systems(r, cluster)
        _figures(r, cluster, meter, http, systems)
    finally:
        for system in systems:
            r.attempt(f"closing {system.key}", system.close)
        cluster.stop()
    res.meta["duration"] = f"{time.monotonic() - r.began:.0f}s"
    r.log("done")
    return res


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _figures(
    r: _Run, cluster: BenchCluster, meter: Meter, http: Any, systems: list[System]
) -> None:
    res, s = r.results, r.sizes
    if r.wanted("ops"):
        for system in systems:
            r.log(f"requests per operation: {system.label}")
            ops = r.attempt(system.key, functools.partial(measure_ops, system, meter, s.op_repeats))
            res.ops[system.key] = ops if isinstance(ops, dict) else {}
    if r.wanted("cycle"):
        for system in systems:
            r.log(f"acquire+release cycles: {system.label}")
            res.cycle[system.key] = r.attempt(
                f"cycles {system.key}", functools.partial(_latency, system.cycles, s.cycles)
            )
    if r.wanted("handoff"):
        _handoffs(r, cluster, http, systems)
    if r.wanted("renewal"):
        for system in systems:
            r.log(f"renewal load: {system.label}")
            res.renewal[system.key] = r.attempt(
                f"renewal {system.key}",
                functools.partial(
                    system.renewal, meter, s.renew_locks, s.renew_interval, s.renew_window
                ),
            )
    if r.wanted("many"):
        r.log(f"{s.many_locks} locks held by one process for {s.many_window:g}s")
        env = Env(cluster.kubeconfig, cluster.namespace("many"))
        res.held_many = r.attempt("held locks", lambda: held_many(env, meter, s))
        r.log(f"{s.many_locks} locks held by one process, every request through httpx2")
        env = Env(cluster.kubeconfig, cluster.namespace("many-httpx2"))
        res.held_many_httpx2 = r.attempt(
            "held locks (httpx2)", lambda: held_many(env, meter, s, lean=False)
        )
    if r.wanted("contention"):
        rows = r.o.rows
        for system in systems:
            res.contention[system.key] = {}
            for n in s.contenders if "fair" in rows else ():
                if system.contend_mode is None:
                    res.contention[system.key][n] = NotMeasured(system.contend_reason)
                    continue
                window = _window(s, n)
                r.log(f"contention: {system.label}, {n} contenders, {window:g}s")
                res.contention[system.key][n] = r.attempt(
                    f"contention {system.key} {n}",
                    functools.partial(contend, system, meter, n, window),
                )
            # (one contender count: nothing to bracket; --quick runs it for the code)
            again = (len(set(s.contenders)) > 1 or s.quick) and "fair" in rows
            if again and system.key in JUDGED and system.contend_mode is not None:
                # The fewest contenders again, right after the most: the ratio of
                # the two ends then does not ride on the host's drift between them.
                n = min(s.contenders)
                res.contention_again_after = max(s.contenders)
                window = _window(s, n)
                r.log(f"contention: {system.label}, {n} contenders again, {window:g}s")
                res.contention_again[system.key] = r.attempt(
                    f"contention {system.key} {n} again",
                    functools.partial(contend, system, meter, n, window),
                )
            if isinstance(system, LockheedAsync) and "fair" in rows:
                n, processes = s.many_tasks
                r.log(f"contention: {system.label}, {n} tasks in {processes} processes")
                res.contention[system.key][n] = r.attempt(
                    f"contention {system.key} {n}",
                    functools.partial(contend, system, meter, n, s.window, processes=processes),
                )
            if isinstance(system, LockheedSync) and not isinstance(system, LockheedLease):
                res.contention[RACING_KEY] = {}
                for n in s.contenders if "racing" in rows else ():
                    r.log(f"contention: {system.label} racing (with_fair(False)), {n} contenders")
                    res.contention[RACING_KEY][n] = r.attempt(
                        f"contention {RACING_KEY} {n}",
                        functools.partial(contend, system, meter, n, _window(s, n), fair=False),
                    )
                n = max(s.contenders)
                for key, kind in SHARED_ROWS if "shared" in rows else ():
                    r.log(f"contention: {SYSTEM_LABELS[key]}, {n} contenders")
                    res.contention[key] = {
                        n: r.attempt(
                            f"contention {key} {n}",
                            functools.partial(contend, system, meter, n, _window(s, n), kind=kind),
                        )
                    }
    if r.wanted("election"):
        for key in ELECTORS:
            elector = next((x for x in systems if x.key == key), None)
            if key == CLIENT_GO_KEY:  # a program of its own, not a System
                env = Env(cluster.kubeconfig, cluster.namespace(key))
            elif elector is None:
                res.election[key] = NotMeasured(res.settings.get(key) or "not set up")
                continue
            else:
                env = elector.env
            res.election[key] = r.attempt(
                f"election {key}",
                functools.partial(election, key, env, meter, s, r.attempt, r.log),
            )
    if r.wanted("listing"):
        kubectl = _kubectl(r)
        r.log(f"listing at {', '.join(str(n) for n in s.listing)} locks")
        res.listing = r.attempt(
            "listing",
            lambda: listing(cluster, meter, s.listing, s.list_repeats, kubectl, r.log),
        )


def _window(s: Sizes, contenders: int) -> float:
    """The contention window: longer at the most contenders, if the sizes say so."""
    if s.fair_window is not None and contenders == max(s.contenders):
        return s.fair_window
    return s.window


def _latency(measure: Callable[[int], list[float]], n: int) -> Latency:
    return Latency(tuple(measure(n)))


def _kubectl(r: _Run) -> Path | NotMeasured:
    if r.o.kubectl is not None:
        return r.o.kubectl
    built = r.attempt("building kubectl", lambda: ensure_kubectl(r.log))
    return built


def _handoffs(r: _Run, cluster: BenchCluster, http: Any, systems: list[System]) -> None:
    """Hand-offs of every system, and the reference PUTs, in interleaved rounds.

    Each round takes a share of the reference PUTs and of every system's
    hand-offs, so that a drift of the server's speed during the figure hits
    them alike and cannot decide a ratio between them.
    """
    res, s = r.results, r.sizes
    rounds = s.rounds
    namespace = cluster.namespace("raw-put")
    background: list[threading.Thread] = []
    for system in systems:
        if isinstance(system, LeaderElection):
            n = s.election_pairs
            r.log(f"hand-offs: {system.label}, {n} in parallel, in the background")

            def elect(system: System, n: int) -> None:
                res.handoff[system.key] = r.attempt(
                    f"hand-offs {system.key}", functools.partial(_latency, system.handoffs, n)
                )

            thread = threading.Thread(
                target=elect, args=(system, n), name="bench-election", daemon=True
            )
            thread.start()
            background.append(thread)
    polled = [x for x in systems if not isinstance(x, LeaderElection)]
    samples: dict[str, list[float]] = {x.key: [] for x in polled}
    failed: dict[str, NotMeasured] = {}
    puts: list[float] = []
    put_share, share = _shares(s.raw_puts, rounds), _shares(s.handoffs, rounds)
    for round_ in range(rounds):
        r.log(
            f"hand-offs, round {round_ + 1} of {rounds}: {put_share[round_]} reference PUTs, "
            f"{share[round_]} hand-offs of each system"
        )
        put = r.attempt(
            "raw PUT", functools.partial(raw_put, http, namespace, put_share[round_], f"r{round_}")
        )
        if isinstance(put, Latency):
            puts += put.samples
        else:
            failed["raw-put"] = put
        for system in polled:
            if system.key in failed:
                continue
            got = r.attempt(
                f"hand-offs {system.key}",
                functools.partial(_latency, system.handoffs, share[round_]),
            )
            if isinstance(got, Latency):
                samples[system.key] += got.samples
            else:
                failed[system.key] = got
    res.raw_put = failed.get("raw-put") or Latency(tuple(puts), f"{rounds} rounds")
    for system in polled:
        res.handoff[system.key] = failed.get(system.key) or Latency(
            tuple(samples[system.key]), f"{rounds} rounds"
        )
    for thread in background:
        r.log("waiting for the leader-election hand-offs")
        thread.join(10 * s.election.lease_duration + 120)


def _shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` nearly equal whole shares."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]
