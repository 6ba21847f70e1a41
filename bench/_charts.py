"""PNG charts of a run (matplotlib, Agg backend).

* ``handoff.png``: distribution (ECDF, log time axis) of hand-off latency per
  system, with the API server's single PUT p50 and twice it marked; beside it
  the same for the uncontended acquire+release cycle.
* ``throughput.png``: acquisitions per second, and API requests per
  acquisition, against the number of contenders (lockheed racing dashed).
* ``fairness.png``: distribution (ECDF) of the waits of the largest
  process-contender row, per system.
* ``listing.png``: listing time against the number of locks, lockheed against
  kubectl.

Without matplotlib installed no chart is drawn and the report says so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ._results import Contention, Latency, Results, median

__all__ = ["draw"]

COLORS = {
    "lockheed-sync": "#1f77b4",
    "lockheed-async": "#17becf",
    "lockheed-lease": "#2ca02c",
    "sherlock": "#d62728",
    "leaderelection": "#ff7f0e",
    "go-lockheed": "#2ca02c",
    "lockheed-racing": "#9467bd",
}


def _plain(axis: Any) -> None:
    """Plain numbers (not powers of ten) on a log axis; minor ticks at 2 and 5."""
    from matplotlib.ticker import FuncFormatter, ScalarFormatter

    formatter = ScalarFormatter()
    formatter.set_scientific(False)
    axis.set_major_formatter(formatter)

    def minor(value: float, _pos: int | None) -> str:
        low, high = axis.get_view_interval()
        if value <= 0 or low <= 0 or high / low > 100:  # wide axes: decades are enough
            return ""
        mantissa = value / 10 ** math.floor(math.log10(value))
        return f"{value:g}" if round(mantissa, 6) in (2.0, 5.0) else ""

    axis.set_minor_formatter(FuncFormatter(minor))


def _ecdf(ax: Any, samples: tuple[float, ...], label: str, color: str) -> None:
    data = sorted(s * 1000 for s in samples if s > 0)
    if not data:
        return
    ys = [(i + 1) / len(data) for i in range(len(data))]
    ax.step(data, ys, where="post", label=f"{label} (p50 {median(data):.1f} ms)", color=color)


def _latency_panel(ax: Any, res: Results, figure: dict[str, Any], title: str) -> None:
    for key, value in figure.items():
        if isinstance(value, Latency):
            _ecdf(ax, value.samples, res.systems.get(key, key), COLORS.get(key, "gray"))
    ax.set_xscale("log")
    _plain(ax.xaxis)
    ax.set_xlabel("milliseconds (log scale)")
    ax.set_ylabel("fraction of samples ≤ x")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)


def draw(res: Results, out: Path) -> list[str]:
    """Draw the charts into ``out``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths: list[str] = []

    if res.handoff or res.cycle:
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
        _latency_panel(left, res, dict(res.handoff), "Hand-off: release returned → waiter holds")
        if isinstance(res.raw_put, Latency):
            p50 = res.raw_put.p50 * 1000
            left.axvline(p50, color="black", linestyle=":", label=f"server PUT p50 {p50:.1f} ms")
            left.axvline(2 * p50, color="gray", linestyle="--", label="2 x PUT p50 (target)")
        left.legend(fontsize=8, loc="lower right")
        _latency_panel(right, res, dict(res.cycle), "Uncontended acquire + release cycle")
        right.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        path = out / "handoff.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(str(path))

    if res.contention:
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
        for key, per in res.contention.items():
            points = sorted((n, c) for n, c in per.items() if isinstance(c, Contention))
            if not points:
                continue
            xs = [n for n, _ in points]
            label = res.systems.get(key, key)
            color = COLORS.get(key, "gray")
            style = "o--" if key == "lockheed-racing" else "o-"
            left.plot(
                xs, [c.acquisitions_per_s for _, c in points], style, label=label, color=color
            )
            per_acquisition = [c.requests_per_acquisition for _, c in points]
            right.plot(xs, per_acquisition, style, label=label, color=color)
        right.axhline(3, color="gray", linestyle=":", label="3 (target)")
        for ax, title, ylabel in (
            (left, "Contended throughput on one lock", "acquisitions per second"),
            (right, "API requests per acquisition", "requests (server-counted)"),
        ):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({n for per in res.contention.values() for n in per}))
            _plain(ax.xaxis)
            ax.set_xlabel("contenders (processes; tasks for asyncio)")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        right.set_yscale("log")
        _plain(right.yaxis)
        fig.tight_layout()
        path = out / "throughput.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(str(path))

        sizes = list(res.contention.get("lockheed-sync", {})) or [0]
        biggest = {key: per.get(max(sizes)) for key, per in res.contention.items()}
        waits = {
            key: c
            for key, c in biggest.items()
            if isinstance(c, Contention) and c.fairness is not None
        }
        if waits:
            fig, ax = plt.subplots(figsize=(7, 5))
            for key, c in waits.items():
                assert c.fairness is not None
                label = f"{res.systems.get(key, key)}: {c.fairness.overtakes} overtakes"
                _ecdf(ax, c.fairness.waits, label, COLORS.get(key, "gray"))
            ax.set_xscale("log")
            _plain(ax.xaxis)
            ax.set_xlabel("milliseconds from asking to holding (log scale)")
            ax.set_ylabel("fraction of acquisitions ≤ x")
            ax.set_title(f"Waits of {max(sizes)} greedy contenders on one lock")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8, loc="lower right")
            fig.tight_layout()
            path = out / "fairness.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(str(path))

    if isinstance(res.listing, list) and res.listing:
        fig, ax = plt.subplots(figsize=(7, 5))
        xs = [x.locks for x in res.listing]
        series = [
            ("list_locks (in process)", [median(x.lockheed) for x in res.listing], "#1f77b4"),
            ("lockheed list (CLI process)", [median(x.cli) for x in res.listing], "#9467bd"),
        ]
        if all(isinstance(x.kubectl, tuple) for x in res.listing):
            kubectl = [median(x.kubectl) for x in res.listing if isinstance(x.kubectl, tuple)]
            series.append(("kubectl get -o json", kubectl, "black"))
        for label, ys, color in series:
            ax.plot(xs, [y * 1000 for y in ys], "o-", label=label, color=color)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain(ax.xaxis)
        _plain(ax.yaxis)
        ax.set_xlabel("lock ConfigMaps in the namespace")
        ax.set_ylabel("milliseconds (median)")
        ax.set_title("Listing locks with a condition")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / "listing.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(str(path))
    return paths
