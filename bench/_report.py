"""The results as one table (printed, and in ``report.md``), the targets with
their verdicts, and the details behind every figure.

Go lockheed v0.5.3 is a column of its own. When the Go test program can be
had (see :mod:`bench._golockheed`) it is measured like the others; when it
cannot be built, its figures say why, and the request
counts shown for it are read from its source (``kubelocker.go``: ``Acquire`` is
``Init`` (an unfiltered LIST of the namespace, plus a CREATE when the ConfigMap
is missing), then a GET and an UPDATE that reserve the object, then the UPDATE
that writes the lease and drops the reservation; ``Renew`` and ``Release`` are
the same GET and two UPDATEs), marked as such wherever they appear. The targets
that compare with Go lockheed use its measured figures when there are any.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ._election import ELECTORS
from ._ops import OP_LABELS
from ._results import (
    Contention,
    ElectionRun,
    Fairness,
    HeldMany,
    ImportTime,
    Latency,
    NotMeasured,
    OpCount,
    Renewal,
    Requests,
    Results,
    median,
    percentile,
)
from ._runner import GO_KEY, GO_REASON, JUDGED, RACING_KEY, RW_KEY, SEMAPHORE_KEY
from ._systems import OPS

__all__ = [
    "Table",
    "Verdict",
    "build_table",
    "targets",
    "text_summary",
    "verdict_lines",
    "write_report",
]

PYTHON = ("lockheed-sync", "lockheed-async", "lockheed-lease", "sherlock", "leaderelection")
MEASURED = (*PYTHON, GO_KEY)
LOCKHEED = JUDGED
POLLERS = ("sherlock", "leaderelection")
COLUMNS = MEASURED
DAGGER = "†"
# Go lockheed v0.5.3, from its source (kubelocker.go), not measured.
GO_REQUESTS = {
    "acquire-new": (5, "LIST POST GET 2PUT"),
    "acquire-free": (4, "LIST GET 2PUT"),
    "renew": (3, "GET 2PUT"),
    "release": (3, "GET 2PUT"),
}
GO_NOTE = (
    f"{DAGGER} Go lockheed v0.5.3: from its source (kubelocker.go), {{why}}. Its LIST is of the "
    "whole namespace, without a label selector."
)
GO_MEASURED_NOTE = (
    "Go lockheed v0.5.3: measured through the Go program tests/golockheed (Go lockheed's own "
    "Acquire, Renew, Release and AcquireRetry); its Acquire LISTs the whole namespace, without "
    "a label selector."
)


def _go_ops(res: Results) -> dict[str, OpCount]:
    """Go lockheed's measured request counts per operation (empty when not measured)."""
    return {op: v for op, v in res.ops.get(GO_KEY, {}).items() if isinstance(v, OpCount)}


def _go_measured(res: Results) -> bool:
    return (
        bool(_go_ops(res))
        or any(
            isinstance(figure.get(GO_KEY), (Latency, Renewal))
            for figure in (res.cycle, res.handoff, res.renewal)
        )
        or any(isinstance(c, Contention) for c in res.contention.get(GO_KEY, {}).values())
    )


def _go_note(res: Results) -> str:
    if not _go_measured(res):
        return GO_NOTE.format(why=_missing(res, GO_KEY) or "not measured in this run")
    if len(_go_ops(res)) < len(OPS) or not isinstance(res.renewal.get(GO_KEY), Renewal):
        return (
            f"{GO_MEASURED_NOTE} {DAGGER} From its source (kubelocker.go) where that "
            "figure was not measured."
        )
    return GO_MEASURED_NOTE


# ------------------------------------------------------------------ formatting


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    if math.isnan(ms):
        return "?"
    if ms >= 1000:
        return f"{seconds:.1f} s"
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def _pair(lat: Latency) -> str:
    p50, p99 = lat.p50, lat.p99
    if p50 >= 1 and p99 >= 1:
        return f"{p50:.1f} / {p99:.1f} s"
    return f"{_ms(p50).removesuffix(' ms')} / {_ms(p99)}"


def _ratio(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return "?"
    if value < 10:
        return f"{value:.2f}x"
    return f"{value:.1f}x" if value < 100 else f"{value:.0f}x"


def _verbs(requests: Requests) -> str:
    return " ".join(requests.by_verb()) or "none"


def _share(value: float) -> str:
    return f"{value * 100:.1f}%"


class Table:
    """Rows of cells; a cell that is not measured shows ``n/a[k]`` with note ``k``."""

    def __init__(self, header: Sequence[str]):
        self.header = list(header)
        self.rows: list[list[str]] = []
        self.notes: dict[str, int] = {}

    def na(self, reason: str) -> str:
        number = self.notes.setdefault(reason, len(self.notes) + 1)
        return f"n/a[{number}]"

    def add(self, row: Sequence[str]) -> None:
        self.rows.append(list(row))

    def note_lines(self) -> list[str]:
        return [f"[{n}] {reason}" for reason, n in self.notes.items()]

    def text(self) -> str:
        widths = [
            max(len(r[i]) for r in [self.header, *self.rows]) for i in range(len(self.header))
        ]
        line = "-+-".join("-" * w for w in widths)

        def fmt(row: list[str]) -> str:
            return " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()

        return "\n".join([fmt(self.header), line, *(fmt(r) for r in self.rows)])

    def markdown(self) -> str:
        def fmt(row: list[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") or " " for c in row) + " |"

        sep = "|" + "|".join(" --- " for _ in self.header) + "|"
        return "\n".join([fmt(self.header), sep, *(fmt(r) for r in self.rows)])


def _missing(res: Results, key: str) -> str:
    """Why a whole system has no figures (not installed, failed to start), or ''."""
    setting = res.settings.get(key, "")
    return setting if setting.startswith(("not measured", "failed")) else ""


def build_table(res: Results) -> Table:
    labels = [res.systems.get(k, k) for k in COLUMNS]
    t = Table(["figure", *labels, "reference"])

    def cell(key: str, value: Any, render: Any) -> str:
        if value is None:
            return t.na(_missing(res, key) or "not run")
        if isinstance(value, NotMeasured):
            return t.na(f"{res.systems.get(key, key)}: {value.reason}")
        return str(render(value))

    go_ops = _go_ops(res)
    for op in OPS:
        row = [f"API requests: {OP_LABELS[op]}"]
        for key in PYTHON:
            v = res.ops.get(key, {}).get(op)
            row.append(cell(key, v, lambda c: c.requests.short()))
        if op in go_ops:
            row.append(go_ops[op].requests.short())
        else:
            n, verbs = GO_REQUESTS[op]
            row.append(f"{n}{DAGGER} ({verbs})")
        t.add([*row, ""])

    row = ["acquire+release cycle p50 / p99"]
    row += [cell(k, res.cycle.get(k), _pair) for k in COLUMNS]
    t.add([*row, ""])

    put = res.raw_put
    ref = f"server PUT p50 {_ms(put.p50)}" if isinstance(put, Latency) else ""
    row = ["hand-off p50 / p99"]
    row += [cell(k, res.handoff.get(k), _pair) for k in COLUMNS]
    t.add([*row, ref])

    sizes = sorted({n for per in res.contention.values() for n in per})
    racing = res.contention.get(RACING_KEY, {})
    for n in sizes:
        row = [f"{n} contenders: acquisitions/s, req/acquisition"]
        for key in COLUMNS:
            c = res.contention.get(key, {}).get(n)
            text = "" if c is None else cell(key, c, _contention_cell)
            again = res.contention_again.get(key)
            if n == sizes[0] and isinstance(again, Contention):
                most = res.contention_again_after
                text += f" (again after {most}: {_contention_cell(again)})"
            race = racing.get(n)
            if key == "lockheed-sync" and isinstance(race, Contention):
                text += f" (racing: {_contention_cell(race)})"
            row.append(text)
        t.add([*row, ""])
    fair_n = _fair_n(res)
    if fair_n is not None:
        n = fair_n
        row = [f"{n} contenders: overtakes, Jain's index, wait p50 / p99"]
        for key in COLUMNS:
            c = res.contention.get(key, {}).get(n)
            f = c.fairness if isinstance(c, Contention) else None
            text = _fairness_cell(f) if f is not None else ""
            race = racing.get(n)
            if key == "lockheed-sync" and isinstance(race, Contention) and race.fairness:
                text += f" (racing: {_fairness_cell(race.fairness)})"
            row.append(text)
        t.add([*row, ""])

    interval = next(
        (v.interval for v in res.renewal.values() if isinstance(v, Renewal)), float("nan")
    )
    row = [f"renewal every {interval:g} s: req/s per lock"]
    for key in PYTHON:
        row.append(
            cell(
                key,
                res.renewal.get(key),
                lambda v: f"{v.per_lock_per_s:.2f} ({_verbs(v.requests)})",
            )
        )
    go_renewal = res.renewal.get(GO_KEY)
    if isinstance(go_renewal, Renewal):
        row.append(f"{go_renewal.per_lock_per_s:.2f} ({_verbs(go_renewal.requests)})")
    else:
        row.append(f"{3 / interval:.0f}{DAGGER} (GET 2PUT)" if not math.isnan(interval) else "")
    t.add([*row, ""])

    _election_rows(res, t, cell)

    many = res.held_many
    if not isinstance(many, NotMeasured) or many.reason != "not run":
        label = "held locks, one process: CPU, RSS"
        if isinstance(many, HeldMany):
            label = f"{many.locks:,} held locks: CPU of a core, RSS"
        first = cell("lockheed-sync", many, lambda m: f"{_share(m.cpu_share)}, {m.rss_mb:.0f} MB")
        t.add([label, first, *[""] * (len(t.header) - 2)])

    if isinstance(res.listing, list):
        for item in res.listing:
            kubectl = (
                f"kubectl {_ms(median(item.kubectl))}"
                if not isinstance(item.kubectl, NotMeasured)
                else t.na(f"kubectl: {item.kubectl.reason}")
            )
            t.add(
                [
                    f"list {item.locks:,} locks (with a condition)",
                    f"{_ms(median(item.lockheed))} (CLI {_ms(median(item.cli))})",
                    _ms(median(item.lockheed_async)),
                    *[""] * (len(t.header) - 4),
                    kubectl,
                ]
            )
    elif res.listing.reason != "not run":
        t.add(
            [
                "list locks (with a condition)",
                t.na(f"listing: {res.listing.reason}"),
                *[""] * (len(t.header) - 2),
            ]
        )

    if res.imports:
        imp = res.imports

        def imp_cell(key: str) -> str:
            v = imp.get(key)
            if v is None:
                return ""
            if isinstance(v, NotMeasured):
                return t.na(f"import {key}: {v.reason}")
            return f"{median(v.importtime_us) / 1000:.0f} ms"

        lockheed = imp_cell("lockheed")
        lightkube = imp_cell("lightkube")
        t.add(
            [
                "import time (fresh interpreter)",
                lockheed,
                lockheed,
                lockheed,
                imp_cell("sherlock"),
                imp_cell("kubernetes"),
                "" if _go_measured(res) else t.na(_missing(res, GO_KEY) or GO_REASON),
                f"lightkube {lightkube}" if lightkube else "",
            ]
        )
    return t


def _election_rows(res: Results, t: Table, cell: Any) -> None:
    """Leader election: lockheed's LeaderElector (in the lockheed (sync) column) and
    the kubernetes client's LeaderElection."""
    if not res.election:
        return

    def steady(run: ElectionRun) -> str:
        parts = [
            f"{v.per_lock_per_s:.2f}" if isinstance(v, Renewal) else t.na(f"steady: {v.reason}")
            for v in (run.leader, run.with_candidate)
        ]
        return f"{parts[0]} ({parts[1]})"

    rows: list[tuple[str, Any, Any]] = [
        ("leader election: new leader after clean exit", lambda r: r.after_exit, _pair),
        ("leader election: new leader after kill -9", lambda r: r.after_kill, _pair),
        ("leader election: req/s of a leader (+1 candidate)", lambda r: r, steady),
    ]
    for label, pick, render in rows:
        row = [label]
        for key in COLUMNS:
            run = res.election.get(key)
            if key not in ELECTORS:
                row.append("")
            elif isinstance(run, ElectionRun):
                row.append(cell(key, pick(run), render))
            else:
                row.append(cell(key, run, render))
        t.add([*row, ""])


def _contention_cell(c: Contention) -> str:
    return f"{c.acquisitions_per_s:.0f}/s, {c.requests_per_acquisition:.1f}"


def _rate(c: Contention) -> str:
    """``c``'s acquisitions per second, and the host's CPU stolen meanwhile when known."""
    rate = f"{c.acquisitions_per_s:.0f}/s"
    return rate if c.steal is None else f"{rate} (steal {_share(c.steal)})"


def _stolen(c: Contention) -> str:
    """The share of the host's CPU time stolen during ``c``'s window ("?": unknown)."""
    return "?" if c.steal is None else _share(c.steal)


def _fairness_cell(f: Fairness) -> str:
    waits = f"{_ms(percentile(f.waits, 50)).removesuffix(' ms')} / {_ms(percentile(f.waits, 99))}"
    return f"{_share(f.overtake_share)}, {f.jain:.2f}, {waits}"


def _fair_n(res: Results) -> int | None:
    """The contender count of the fairness figure: the most processes measured."""
    sizes = [n for n, c in res.contention.get("lockheed-sync", {}).items()]
    return max(sizes) if sizes else None


# --------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    verdict: str  # "met", "not met", "not measurable"
    ratio: str
    why: str = ""


def _listing_rows(res: Results) -> list[tuple[int, float, float, float]]:
    """(locks, list_locks p50, CLI p50, kubectl p50) where kubectl was measured."""
    if not isinstance(res.listing, list):
        return []
    return [
        (x.locks, median(x.lockheed), median(x.cli), median(x.kubectl))
        for x in res.listing
        if isinstance(x.kubectl, tuple)
    ]


def _ops_of(res: Results, key: str, op: str) -> float | None:
    v = res.ops.get(key, {}).get(op)
    return v.requests.total if isinstance(v, OpCount) else None


def _lat(res: dict[str, Latency | NotMeasured], key: str) -> Latency | None:
    v = res.get(key)
    return v if isinstance(v, Latency) else None


def _request_target(
    res: Results, ops: Sequence[str], limit: float, go_op: str, what: str, why: str = ""
) -> Verdict:
    measured_go = _ops_of(res, GO_KEY, go_op)
    go = measured_go if measured_go is not None else GO_REQUESTS[go_op][0]
    go_text = f"{go:g}" if measured_go is not None else f"{go}{DAGGER}"
    found = {
        f"{key.removeprefix('lockheed-')} {op.replace('acquire-', '')}": _ops_of(res, key, op)
        for key in LOCKHEED
        for op in ops
    }
    values = [v for v in found.values() if v is not None]
    label = "≤" if what != "renew" else "="
    target = f"API requests per {what} {label} {limit:g} (Go lockheed: {go_text})"
    if not values:
        return Verdict(target, "not measured", "not measurable", "", "the figure did not run")
    worst = max(values)
    measured = ", ".join(f"{k} {v:g}" for k, v in found.items() if v is not None)
    return Verdict(
        target,
        measured,
        "met" if worst <= limit + 1e-9 else "not met",
        f"{_ratio(worst / go)} Go's",
        why,
    )


# Why creating a lock takes a write more than taking an existing one (docs/concepts.md).
NEW_LOCK_WHY = (
    "created free, then taken: a fencing token is the version its write replaces, so it "
    "is known before the write and written with it; a create replaces nothing, and a 404 "
    "names no revision above the tokens of an earlier object of that name (deleted and "
    "created again), so a lock created held could hand out a smaller token"
)


def targets(res: Results) -> list[Verdict]:
    out = [
        _request_target(res, ("acquire-free",), 2, "acquire-free", "acquire of an existing lock"),
        _request_target(
            res, ("acquire-new",), 3, "acquire-new", "acquire of a new lock", NEW_LOCK_WHY
        ),
        _request_target(res, ("renew",), 1, "renew", "renew"),
        _request_target(res, ("release",), 2, "release", "release"),
    ]

    cycles = {k: _lat(res.cycle, k) for k in LOCKHEED}
    measured = ", ".join(
        f"{k.removeprefix('lockheed-')} p50 {_ms(v.p50)}" for k, v in cycles.items() if v
    )
    best = min((v.p50 for v in cycles.values() if v), default=math.nan)
    target = "acquire+release cycle p50 ≤ 0.6 x Go lockheed's"
    go_cycle = _lat(res.cycle, GO_KEY)
    if go_cycle is not None and measured:
        worst = max(v.p50 for v in cycles.values() if v)
        out.append(
            Verdict(
                target,
                f"{measured}; Go p50 {_ms(go_cycle.p50)}",
                "met" if worst <= 0.6 * go_cycle.p50 else "not met",
                ", ".join(
                    f"{k.removeprefix('lockheed-')} {_ratio(v.p50 / go_cycle.p50)} Go's"
                    for k, v in cycles.items()
                    if v
                ),
            )
        )
    else:
        unmeasured = (
            "Go lockheed v0.5.3 could not be measured (its test program could not be built)"
            if go_cycle is None
            else "the figure did not run"
        )
        out.append(
            Verdict(
                target,
                measured or "not measured",
                "not measurable",
                "",
                f"{unmeasured}; the target holds if Go's p50 is at least {_ms(best / 0.6)}"
                if not math.isnan(best)
                else unmeasured,
            )
        )

    put = res.raw_put if isinstance(res.raw_put, Latency) else None
    hands = {k: _lat(res.handoff, k) for k in LOCKHEED}
    target = "hand-off p50 ≤ 2 x the API server's single PUT p50 (same run)"
    if put is None or not any(hands.values()):
        out.append(Verdict(target, "not measured", "not measurable", "", "a figure did not run"))
    else:
        got = {k: v for k, v in hands.items() if v}
        ratios = {k: v.p50 / put.p50 for k, v in got.items()}
        met = max(ratios.values()) <= 2
        extra = max(v.p50 for v in got.values()) - put.p50
        out.append(
            Verdict(
                target,
                ", ".join(f"{k.removeprefix('lockheed-')} {_ms(v.p50)}" for k, v in got.items())
                + f"; PUT {_ms(put.p50)}",
                "met" if met else "not met",
                ", ".join(f"{k.removeprefix('lockheed-')} {_ratio(r)}" for k, r in ratios.items()),
                ""
                if met
                else "a hand-off is the release's watch event, then the waiter's own PUT, made "
                "while the server is still answering the release and ending the watch; the "
                f"slower p50 is {_ms(extra)} more than one bare PUT",
            )
        )

    target = "hand-off ≥ 10 x faster than the polling alternatives at their default settings"
    mine = [v.p50 for v in hands.values() if v]
    theirs = {k: v for k in POLLERS if (v := _lat(res.handoff, k))}
    if not mine or not theirs:
        out.append(Verdict(target, "not measured", "not measurable", "", "a figure did not run"))
    else:
        slowest = max(mine)
        ratios = {k: v.p50 / slowest for k, v in theirs.items()}
        met = min(ratios.values()) >= 10
        closest = min(ratios, key=lambda k: ratios[k])
        out.append(
            Verdict(
                target,
                f"lockheed p50 {_ms(slowest)} (slower of sync/async); "
                + ", ".join(f"{res.systems[k]} {_ms(v.p50)}" for k, v in theirs.items()),
                "met" if met else "not met",
                ", ".join(f"{_ratio(r)} faster than {res.systems[k]}" for k, r in ratios.items()),
                ""
                if met
                else f"{res.systems[closest]} at its defaults hands off in "
                f"{_ms(theirs[closest].p50)} (p50); 10x faster is {_ms(theirs[closest].p50 / 10)}, "
                f"while lockheed's slower p50 is {_ms(slowest)}",
            )
        )

    out += _contention_targets(res)

    renewals = {k: res.renewal.get(k) for k in LOCKHEED}
    found = {k: v for k, v in renewals.items() if isinstance(v, Renewal)}
    go_renewal = res.renewal.get(GO_KEY)
    go_measured = isinstance(go_renewal, Renewal)
    target = "renewal load ≤ 1/3 of Go lockheed's at the same interval" + (
        "" if go_measured else f" (Go: 3{DAGGER} per renew)"
    )
    if not found:
        out.append(Verdict(target, "not measured", "not measurable", "", "the figure did not run"))
    else:
        interval = next(iter(found.values())).interval
        if isinstance(go_renewal, Renewal):
            go = go_renewal.per_lock_per_s
            go_text = f"{go:.2f}"
        else:
            go = 3 / interval
            go_text = f"{go:g}{DAGGER}"
        worst = max(v.per_lock_per_s for v in found.values())
        out.append(
            Verdict(
                target,
                ", ".join(
                    f"{k.removeprefix('lockheed-')} {v.per_lock_per_s:.2f} req/s"
                    for k, v in found.items()
                )
                + f" per lock at {interval:g} s; Go {go_text} req/s",
                # measured Go loses the same renewal at a window's edge: allow 2 %
                "met" if worst <= go / 3 * (1.02 if go_measured else 1) + 1e-9 else "not met",
                f"{_ratio(worst / go)} Go's",
            )
        )

    many = res.held_many
    if isinstance(many, HeldMany):
        size = f"{many.locks:,} held locks"
        rate = many.locks / many.interval
        met = many.cpu_share <= 0.05
        out.append(
            Verdict(
                f"{size} renewed by one background thread: ≤ 5% of a core",
                f"{_share(many.cpu_share)} ({many.cpu_seconds:.2f} s CPU in {many.window:.0f} s, "
                f"{many.renewals} renewals, {many.cpu_per_renewal * 1000:.2f} ms each)"
                + _httpx2_many(res),
                "met" if met else "not met",
                f"{_ratio(many.cpu_share / 0.05)} the limit",
                ""
                if met
                else f"one renewal costs {many.cpu_per_renewal * 1000:.2f} ms of CPU, a bare PUT "
                f"through httpx2 {many.bare_put_cpu * 1000:.2f} ms; at {rate:g} "
                f"renewals/s that is {_share(many.steady_share)} of a core in steady state, and "
                f"the bare PUTs alone would be {_share(many.bare_put_cpu * rate)}",
            )
        )
        out.append(
            Verdict(
                f"{size}: ≤ 150 MB RSS",
                f"{many.rss_mb:.0f} MB (peak {many.hwm_mb:.0f} MB)",
                "met" if many.rss_mb <= 150 else "not met",
                f"{_ratio(many.rss_mb / 150)} the limit",
            )
        )
    else:
        out.append(
            Verdict(
                "held locks: ≤ 5% of a core, ≤ 150 MB RSS",
                "not measured",
                "not measurable",
                "",
                many.reason,
            )
        )

    target = "listing with a condition ≤ 1.5 x kubectl get -l lockheed/lock -o json"
    rows = _listing_rows(res)
    if rows:
        out.append(
            Verdict(
                target,
                "; ".join(f"{n:,}: {_ms(mine)} vs {_ms(kubectl)}" for n, mine, _, kubectl in rows),
                "met" if all(mine <= 1.5 * kubectl for _, mine, _, kubectl in rows) else "not met",
                ", ".join(f"{n:,}: {_ratio(mine / kubectl)}" for n, mine, _, kubectl in rows)
                + " (lockheed list CLI, a fresh process like kubectl: "
                + ", ".join(f"{n:,}: {_ratio(cli / kubectl)}" for n, _, cli, kubectl in rows)
                + ")",
            )
        )
    else:
        reason = res.listing.reason if isinstance(res.listing, NotMeasured) else "kubectl missing"
        out.append(Verdict(target, "not measured", "not measurable", "", reason))

    target = "import lockheed ≤ 1.3 x import lightkube"
    a, b = res.imports.get("lockheed"), res.imports.get("lightkube")
    if isinstance(a, ImportTime) and isinstance(b, ImportTime):
        ratio = median(a.importtime_us) / median(b.importtime_us)
        out.append(
            Verdict(
                target,
                f"{median(a.importtime_us) / 1000:.0f} ms vs "
                f"{median(b.importtime_us) / 1000:.0f} ms",
                "met" if ratio <= 1.3 else "not met",
                _ratio(ratio),
            )
        )
    else:
        out.append(Verdict(target, "not measured", "not measurable", "", "the figure did not run"))
    return out


def _httpx2_many(res: Results) -> str:
    h = res.held_many_httpx2
    if not isinstance(h, HeldMany):
        return ""
    return (
        f"; every request through httpx2 (LOCKHEED_HTTP1=0), same run: {_share(h.cpu_share)}, "
        f"{h.cpu_per_renewal * 1000:.2f} ms per renewal"
    )


def _contended(res: Results, key: str, n: int | None) -> Contention | None:
    c = res.contention.get(key, {}).get(n) if n is not None else None
    return c if isinstance(c, Contention) else None


def _contention_targets(res: Results) -> list[Verdict]:
    out: list[Verdict] = []
    sizes = sorted(res.contention.get("lockheed-sync", {}))
    if not sizes:
        return [
            Verdict("contended throughput and fairness", "not measured", "not measurable", "", "")
        ]
    low, high = sizes[0], sizes[-1]
    short = {"lockheed-sync": "sync", "lockheed-async": "async", RACING_KEY: "racing"}

    target = f"contended throughput at {high} contenders ≥ 0.8 x at {low} (same run)"
    got = {
        k: (a, b)
        for k in (*LOCKHEED, RACING_KEY)
        if (a := _contended(res, k, low)) and (b := _contended(res, k, high))
    }
    if not all(k in got for k in LOCKHEED):
        out.append(Verdict(target, "not measured", "not measurable", "", "a figure failed"))
    else:
        again = {k: c for k in got if isinstance(c := res.contention_again.get(k), Contention)}

        def low_rate(key: str, first: Contention) -> float:
            # The mean of the runs before and after the largest one, when both ran.
            second = again.get(key)
            if second is None:
                return first.acquisitions_per_s
            return (first.acquisitions_per_s + second.acquisitions_per_s) / 2

        def low_text(key: str, first: Contention) -> str:
            second = again.get(key)
            if second is None:
                return _rate(first)
            return f"({_rate(first)} before, {_rate(second)} after)"

        ratios = {k: b.acquisitions_per_s / max(low_rate(k, a), 1e-9) for k, (a, b) in got.items()}
        out.append(
            Verdict(
                target,
                ", ".join(f"{short[k]} {low_text(k, a)} → {_rate(b)}" for k, (a, b) in got.items()),
                "met" if all(ratios[k] >= 0.8 for k in LOCKHEED) else "not met",
                ", ".join(f"{short[k]} {_ratio(r)}" for k, r in ratios.items()),
            )
        )

    target = f"contended throughput at {high} contenders ≥ sherlock KubernetesLock's"
    theirs = _contended(res, "sherlock", high)
    mine = {k: c for k in LOCKHEED if (c := _contended(res, k, high))}
    if theirs is None or len(mine) < len(LOCKHEED):
        out.append(Verdict(target, "not measured", "not measurable", "", "a figure did not run"))
    else:
        ratios = {
            k: c.acquisitions_per_s / max(theirs.acquisitions_per_s, 1e-9) for k, c in mine.items()
        }
        out.append(
            Verdict(
                target,
                ", ".join(f"{short[k]} {c.acquisitions_per_s:.0f}/s" for k, c in mine.items())
                + f"; sherlock {theirs.acquisitions_per_s:.0f}/s",
                "met" if min(ratios.values()) >= 1 else "not met",
                ", ".join(f"{short[k]} {_ratio(r)}" for k, r in ratios.items()),
            )
        )

    rows = [(k, n, c) for k in LOCKHEED for n in sizes if (c := _contended(res, k, n))]
    seconds = {  # the fewest contenders' second run counts too
        k: c for k in LOCKHEED if isinstance(c := res.contention_again.get(k), Contention)
    }
    figures: tuple[tuple[str, Callable[[Contention], float]], ...] = (
        ("acquisition", operator.attrgetter("requests_per_acquisition")),
        ("hand-off", operator.attrgetter("requests_per_handoff")),
    )
    for what, value in figures:
        target = f"API requests per {what} ≤ 3 at {', '.join(map(str, sizes))} contenders"
        if not rows:
            out.append(Verdict(target, "not measured", "not measurable", "", ""))
            continue
        worst = max(value(c) for c in [*(c for _, _, c in rows), *seconds.values()])
        race = [c for n in sizes if (c := _contended(res, RACING_KEY, n))]
        out.append(
            Verdict(
                target,
                "; ".join(
                    f"{short[k]}: "
                    + ", ".join(f"{value(c):.2f}" for kk, _, c in rows if kk == k)
                    + (f" ({sizes[0]} again: {value(seconds[k]):.2f})" if k in seconds else "")
                    for k in LOCKHEED
                )
                + ("; racing: " + ", ".join(f"{value(c):.1f}" for c in race) if race else ""),
                "met" if worst <= 3 + 1e-9 else "not met",
                f"{_ratio(worst / 3)} the limit",
            )
        )

    fairs = {k: c.fairness for k in (*LOCKHEED, RACING_KEY) if (c := _contended(res, k, high))}
    fairs_ok = {k: f for k, f in fairs.items() if f is not None}
    mine_f = {k: f for k, f in fairs_ok.items() if k in LOCKHEED}
    enough = min((f.acquisitions for f in mine_f.values()), default=0)
    for target, kind in (
        (f"overtakes ≤ 5% of acquisitions ({high} greedy contenders)", "overtakes"),
        (f"Jain's fairness index ≥ 0.9 ({high} greedy contenders)", "jain"),
    ):
        if len(mine_f) < len(LOCKHEED):
            out.append(Verdict(target, "not measured", "not measurable", "", "a figure failed"))
            continue
        if kind == "overtakes":
            met = all(f.overtake_share <= 0.05 for f in mine_f.values())
            measured = (
                ", ".join(
                    f"{short[k]} {_share(f.overtake_share)} ({f.overtakes} of {f.acquisitions:,})"
                    for k, f in fairs_ok.items()
                )
                + "; waits p50/p99/max "
                + ", ".join(
                    f"{short[k]} {_ms(percentile(f.waits, 50))}/{_ms(percentile(f.waits, 99))}/"
                    f"{_ms(max(f.waits, default=math.nan))}"
                    for k, f in fairs_ok.items()
                )
            )
            ratio = ", ".join(
                f"{short[k]} {_ratio(f.overtake_share / 0.05)} the limit" for k, f in mine_f.items()
            )
        else:
            met = all(f.jain >= 0.9 for f in mine_f.values())
            measured = ", ".join(f"{short[k]} {f.jain:.3f}" for k, f in fairs_ok.items())
            ratio = ", ".join(
                f"{short[k]} {_ratio(f.jain / 0.9)} the floor" for k, f in mine_f.items()
            )
        why = (
            ""
            if enough >= 1000
            else (f"only {enough:,} acquisitions in the run (the target asks for ≥ 1,000)")
        )
        out.append(Verdict(target, measured, "met" if met else "not met", ratio, why))
    return out


def verdict_lines(verdicts: Sequence[Verdict]) -> list[str]:
    width = max(len(v.verdict) for v in verdicts)
    lines = []
    for v in verdicts:
        tail = f" ({v.ratio})" if v.ratio else ""
        why = f" — {v.why}" if v.why else ""
        lines.append(f"{v.verdict.upper().ljust(width)}  {v.target}: {v.measured}{tail}{why}")
    return lines


# ---------------------------------------------------------------------- report


def _details(res: Results) -> list[str]:
    out: list[str] = []
    out += ["### Systems and settings", ""]
    for key in COLUMNS:
        out.append(f"- **{res.systems.get(key, key)}**: {res.settings.get(key, 'not set up')}")
    out += ["", "### Requests per operation (server-counted, repeat with the median total)", ""]
    out += ["| system | operation | requests | repeats (totals) |", "| --- | --- | --- | --- |"]
    go_ops = _go_ops(res)
    for key in MEASURED:
        for op in OPS:
            v = res.ops.get(key, {}).get(op)
            if isinstance(v, OpCount):
                totals = ", ".join(f"{x:g}" for x in v.totals)
                out.append(
                    f"| {res.systems[key]} | {OP_LABELS[op]} | {v.requests.total:g} = "
                    f"{v.requests.describe()} ({', '.join(v.requests.resources())}) | "
                    f"{v.repeats} ({totals}) |"
                )
            elif isinstance(v, NotMeasured):
                out.append(f"| {res.systems[key]} | {OP_LABELS[op]} | n/a: {v.reason} | |")
    for op in OPS:
        if op in go_ops:
            continue
        n, verbs = GO_REQUESTS[op]
        out.append(
            f"| Go lockheed v0.5.3{DAGGER} | {OP_LABELS[op]} | {n} = {verbs} | from source |"
        )

    out += ["", "### Latency", ""]
    out += [
        "| figure | system | n | p50 | p99 | min | max |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows: list[tuple[str, str, Latency | NotMeasured | None]] = []
    rows += [("cycle", res.systems[k], res.cycle.get(k)) for k in MEASURED]
    rows += [("hand-off", res.systems[k], res.handoff.get(k)) for k in MEASURED]
    rows.append(("single PUT", "API server (httpx2)", res.raw_put))
    for figure, name, lat in rows:
        if isinstance(lat, Latency) and lat.samples:
            out.append(
                f"| {figure} | {name} | {len(lat.samples)} | {_ms(lat.p50)} | {_ms(lat.p99)} | "
                f"{_ms(min(lat.samples))} | {_ms(max(lat.samples))} |"
            )
        elif isinstance(lat, NotMeasured):
            out.append(f"| {figure} | {name} | | n/a: {lat.reason} | | | |")

    out += ["", "### Contended throughput and fairness (one lock)", ""]
    out += [
        "| system | contenders | window | acquisitions/s | hand-offs/s | requests | "
        "req/acquisition | req/hand-off | by verb | overtakes | Jain's index | "
        "wait p50 / p99 / max | LockConflict at the end | host CPU stolen |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in (*MEASURED, RACING_KEY, SEMAPHORE_KEY, RW_KEY):
        rows_of: list[tuple[int, Contention | NotMeasured, str]] = [
            (n, c, "") for n, c in sorted(res.contention.get(key, {}).items())
        ]
        again = res.contention_again.get(key)
        if again is not None and rows_of:
            most = res.contention_again_after
            rows_of.append((min(n for n, _, _ in rows_of), again, f", again after {most}"))
        for n, c, note in rows_of:
            if isinstance(c, Contention):
                f = c.fairness
                fair = (
                    f"{_share(f.overtake_share)} ({f.overtakes} of {f.acquisitions}) | "
                    f"{f.jain:.3f} | {_ms(percentile(f.waits, 50))} / "
                    f"{_ms(percentile(f.waits, 99))} / {_ms(max(f.waits, default=math.nan))}"
                    if f is not None
                    else "n/a | n/a | n/a"
                )
                out.append(
                    f"| {res.systems[key]} | {n} {c.mode}{note} | {c.window:g} s | "
                    f"{c.acquisitions_per_s:.1f} | {c.handoffs_per_s:.1f} | {c.requests.total:g} | "
                    f"{c.requests_per_acquisition:.2f} | {c.requests_per_handoff:.2f} | "
                    f"{c.requests.describe()} | {fair} | {c.conflicts} | {_stolen(c)} |"
                )
            else:
                out.append(f"| {res.systems[key]} | {n}{note} | | n/a: {c.reason} |{' |' * 10}")

    out += ["", "### Renewal load", ""]
    out += ["| system | locks | interval | window | req/s per lock | by verb | how |"]
    out += ["| --- | --- | --- | --- | --- | --- | --- |"]
    for key in MEASURED:
        r = res.renewal.get(key)
        if isinstance(r, Renewal):
            out.append(
                f"| {res.systems[key]} | {r.locks} | {r.interval:g} s | {r.window:.1f} s | "
                f"{r.per_lock_per_s:.2f} | {r.requests.describe()} | {r.note} |"
            )
        elif isinstance(r, NotMeasured):
            out.append(f"| {res.systems[key]} | | | | n/a: {r.reason} | | |")
    if not isinstance(res.renewal.get(GO_KEY), Renewal):
        out.append(
            f"| Go lockheed v0.5.3{DAGGER} | | 1 s | | 3 | GET 1 + PUT 2 per renew | from source |"
        )

    out += _election_details(res)

    m = res.held_many
    out += ["", "### One process holding many locks (lockheed sync)", ""]
    if isinstance(m, HeldMany):
        out += [
            f"- {m.locks:,} locks, duration {m.duration:g} s, renew interval {m.interval:g} s, "
            f"acquired in {m.acquire_seconds:.1f} s (8 threads)",
            f"- window {m.window:.1f} s: CPU {m.cpu_seconds:.2f} s = {_share(m.cpu_share)} of a "
            f"core; VmRSS {m.rss_mb:.1f} MB, VmHWM {m.hwm_mb:.1f} MB",
            f"- CPU per renewal {m.cpu_per_renewal * 1000:.2f} ms; a bare PUT of a small "
            f"ConfigMap through httpx2 (lightkube's client, measured in the "
            f"same process before the window) {m.bare_put_cpu * 1000:.2f} ms; steady state "
            f"({m.locks / m.interval:g} renewals/s) {_share(m.steady_share)} of a core. The "
            "window need not hold a whole number of renewal rounds: each lock is next due one "
            "interval after its renewal ends, and one thread renews them one after another.",
            f"- renewals seen by the process: {m.renewals} (lost: {m.lost}); the server counted "
            f"{m.requests.describe()} = {m.requests.total / max(m.window, 1e-9):.1f} requests/s",
        ]
        h = res.held_many_httpx2
        if isinstance(h, HeldMany):
            out.append(
                f"- the same with every request through httpx2 (`LOCKHEED_HTTP1=0`, as before the "
                f"lean HTTP/1.1 client), same run: CPU {h.cpu_seconds:.2f} s = "
                f"{_share(h.cpu_share)} of a core, {h.cpu_per_renewal * 1000:.2f} ms per renewal "
                f"({h.renewals} renewals, lost {h.lost}); VmRSS {h.rss_mb:.1f} MB"
            )
        elif h.reason != "not run":
            out.append(f"- with every request through httpx2: n/a: {h.reason}")
    else:
        out.append(f"- n/a: {m.reason}")

    out += ["", "### Listing", ""]
    if isinstance(res.listing, list):
        out += [
            "| locks | matched | list_locks | alist_locks | lockheed list (CLI) | kubectl | "
            "ratio list_locks/kubectl | requests (lockheed / kubectl) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for x in res.listing:
            k = median(x.kubectl) if isinstance(x.kubectl, tuple) else math.nan
            kreq = x.kubectl_requests.describe() if x.kubectl_requests else "n/a"
            out.append(
                f"| {x.locks:,} | {x.matched:,} | {_ms(median(x.lockheed))} | "
                f"{_ms(median(x.lockheed_async))} | {_ms(median(x.cli))} | "
                f"{_ms(k) if not math.isnan(k) else 'n/a'} | {_ratio(median(x.lockheed) / k)} | "
                f"{x.lockheed_requests.describe()} / {kreq} |"
            )
    else:
        out.append(f"n/a: {res.listing.reason}")

    out += ["", "### Import time", ""]
    out += ["| statement | versions | -X importtime (median) | wall (median) |"]
    out += ["| --- | --- | --- | --- |"]
    from ._imports import STATEMENTS

    for key, value in res.imports.items():
        statement = STATEMENTS.get(key, (key, ()))[0]
        if isinstance(value, ImportTime):
            out.append(
                f"| `{statement}` | {value.version} | {median(value.importtime_us) / 1000:.1f} ms "
                f"| {median(value.wall) * 1000:.0f} ms |"
            )
        else:
            out.append(f"| `{statement}` | | n/a: {value.reason} | |")
    return out


def _election_details(res: Results) -> list[str]:
    if not res.election:
        return []
    out = [
        "",
        "### Leader election (LeaderElector beside the kubernetes client's and client-go's)",
        "",
    ]
    out += ["| system | new leader after | n | p50 | p99 | min | max |"]
    out += ["| --- | --- | --- | --- | --- | --- | --- |"]
    steady = [
        "",
        "| system | requests of | window | req/s | by verb |",
        "| --- | --- | --- | --- | --- |",
    ]
    names = {
        "lockheed-sync": "lockheed LeaderElector",
        "client-go": "client-go v0.35.4 LeaderElector (Lease)",
    }
    for key in ELECTORS:
        name = names.get(key, res.systems.get(key, key))
        run = res.election.get(key)
        if not isinstance(run, ElectionRun):
            reason = run.reason if isinstance(run, NotMeasured) else "not run"
            out.append(f"| {name} | | | n/a: {reason} | | | |")
            continue
        for figure, lat in (("a clean exit", run.after_exit), ("kill -9", run.after_kill)):
            if isinstance(lat, Latency) and lat.samples:
                out.append(
                    f"| {name} | {figure} | {len(lat.samples)} | {_ms(lat.p50)} | "
                    f"{_ms(lat.p99)} | {_ms(min(lat.samples))} | {_ms(max(lat.samples))} |"
                )
            elif isinstance(lat, NotMeasured):
                out.append(f"| {name} | {figure} | | n/a: {lat.reason} | | | |")
        for r in (run.leader, run.with_candidate):
            if isinstance(r, Renewal):
                steady.append(
                    f"| {name} | {r.note} | {r.window:.1f} s | {r.per_lock_per_s:.2f} | "
                    f"{r.requests.describe()} |"
                )
            else:
                steady.append(f"| {name} | | | n/a: {r.reason} | |")
    out += steady
    timing = next((r.timing for r in res.election.values() if isinstance(r, ElectionRun)), "")
    if timing:
        out += ["", f"All with {timing}; client-go on a Lease, the others on a ConfigMap."]
    return out


METHOD = """\
- Request counts come from the API server's `/metrics` (`apiserver_request_total`,
  summed over response codes by verb for `configmaps` and `leases`), scraped
  before and after each batch; the scrape after a batch waits until the
  batch's watches have ended (the server counts a WATCH when it ends). The
  idle server's own requests are measured first and subtracted
  (background: {background}).
- Latencies: `time.perf_counter()` around each cycle; hand-offs from the
  holder's release returning to the waiter's acquire returning, both stamped
  with `time.monotonic()` in the same process (a thread for sync, a task for
  asyncio), after a random pause of 150-250 ms so the waiter is blocked. With
  asyncio both run on one event loop, so the waiter may already be writing
  before the holder's release resumes: a few samples are shorter than a PUT.
  The reference PUTs (a small ConfigMap, at its resourceVersion, on a
  kept-alive connection of the same HTTP client) and the hand-offs of every
  system are taken in interleaved rounds, so that a drift of the server's
  speed hits them alike.
- Polling systems at their defaults: sherlock retries a blocked acquire every
  0.1 s; the kubernetes leader election has no release, so its hand-off is a
  leader that stops renewing and a candidate that takes over once it has seen
  the record unchanged for a whole lease (`{election}`); its hand-offs run in
  parallel on separate locks. For the same reason its acquire of an existing
  free lock polls (a GET every `retry_period`) until the candidate itself has
  watched the record unchanged for `lease_duration`, however long ago the
  leader stopped.
- Leader election: a leader process and a candidate in the bench process, on
  a lock of their own, both at the same timing; after a random pause of up
  to one retry period the leader gets SIGTERM (lockheed's elector releases
  leadership; the kubernetes client has none, so the process just ends) or
  SIGKILL, and the sample runs from just before the signal to the
  candidate's start of leadership. Requests of a steady leader are counted
  by the server over a window, with and without a campaigning candidate
  process (a WATCH is counted when it ends: lockheed's candidate keeps one
  open, which the server ends after about a minute). client-go's elector
  (`tests/clientgo`, `ReleaseOnCancel`, on a Lease) runs the same steps with
  its candidate a process too, stamped with the same monotonic clock.
- Contention: contenders are processes (tasks of one process for asyncio, and
  of a few processes for the largest asyncio row) started on one signal;
  they take and release the lock with no work in between. lockheed waits in
  line by default; the racing rows are the same contenders with
  `with_fair(False)`. A hand-off is an acquisition by a different contender
  than the previous one. Go lockheed's contenders are processes of the Go
  program; having no way to wait for a lock, each retries a failed `Acquire`
  after a short random pause. lockheed's fair rows run their fewest
  contenders once more right after their most, and the throughput ratio
  divides the rate at the most by the mean of the two runs at the fewest,
  so that a drift of the host's speed between the runs hits both ends alike.
- Fairness: every acquisition is stamped on the host's monotonic clock when
  its contender began to ask (its first acquire call since its previous
  acquisition; a call again after a timeout is the same request) and when it
  got the lock. An acquisition *overtakes* when another that asked earlier got
  the lock later (A.asked > B.asked and A.got < B.got), counted over every
  acquisition of the run; on the semaphore and shared-lock rows, only when B
  could not have entered beside the holders A joined (B exclusive, A
  exclusive, or A taking the semaphore's last place), in the order of the
  writes that let them in (their fencing tokens); Jain's index is (Σx)² / (n·Σx²) over the
  acquisitions x of each of the n contenders inside the window (1: all
  equal); a wait is got - asked. Go lockheed's contenders are processes of
  the Go program; having no way to wait for a lock, each retries a failed
  `Acquire` after a short random pause (they stamp only when they got it).
- Ratios are taken between figures of the same run; latencies are medians
  (p50) and 99th percentiles over the samples, request counts the median
  repeat."""


def write_report(res: Results, out: Path, charts: Sequence[str], chart_error: str) -> Path:
    table = build_table(res)
    verdicts = targets(res)
    quick = res.meta.get("sizes") == "quick"
    lines = ["# lockheed benchmarks", ""]
    meta = res.meta
    lines += [
        f"Run {meta.get('date', '?')}, {meta.get('sizes', '?')} sizes, took "
        f"{meta.get('duration', '?')}, on {meta.get('cpus', '?')} CPUs "
        f"({meta.get('platform', '?')}), "
        f"Python {meta.get('python', '?')}, lockheed {meta.get('lockheed', '?')}.",
        f"API server: {meta.get('server', '?')}, {meta.get('cluster', '?')}.",
        "",
    ]
    if quick:
        lines += [
            "> **Quick run** (`--quick`): tiny sizes that exercise every figure; the numbers "
            "and verdicts are not meaningful.",
            "",
        ]
    lines += ["## Results", "", table.markdown(), ""]
    lines += [f"- {n}" for n in table.note_lines()]
    lines += [f"- {_go_note(res)}", ""]
    lines += [
        "## Targets",
        "",
        "| target | measured | verdict | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for v in verdicts:
        why = f" ({v.why})" if v.why else ""
        lines.append(f"| {v.target} | {v.measured}{why} | **{v.verdict}** | {v.ratio} |")
    lines += ["", "## Charts", ""]
    if charts:
        lines += [f"![{Path(c).stem}]({Path(c).name})" for c in charts]
    else:
        lines.append(f"No charts: {chart_error}")
    lines += ["", "## Details", "", *_details(res), "", "## Method", ""]
    background = res.background.describe() + " per second" if res.background.total else "none"
    lines.append(
        METHOD.format(background=background, election=res.settings.get("leaderelection", ""))
    )
    if res.problems:
        lines += ["", "## Problems", ""]
        lines += [f"- `{p}`" for p in res.problems]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(_jsonable(res), indent=1, default=str) + "\n")
    return path


def _jsonable(res: Results) -> Any:
    return asdict(res)


def text_summary(res: Results) -> str:
    table = build_table(res)
    parts = [table.text(), ""]
    parts += table.note_lines()
    parts += [_go_note(res), "", "Targets:"]
    parts += ["  " + line for line in verdict_lines(targets(res))]
    return "\n".join(parts)
