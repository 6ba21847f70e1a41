"""``python -m bench``: run the benchmarks, print one table, write the report.

Options: ``--quick`` (the least of each figure, under a minute), ``--out DIR`` (default
``bench/results``), ``--kubeconfig PATH`` (use an existing cluster whose user
may read ``/metrics`` and create namespaces, instead of starting one),
``--kubectl PATH`` (use this kubectl instead of building one), ``--only
FIGURES`` (a comma-separated subset of imports, ops, cycle, handoff, renewal,
many, contention, election, listing), ``--systems KEYS`` (a comma-separated
subset of lockheed-sync, lockheed-async, lockheed-lease, sherlock,
leaderelection, go-lockheed; default all), ``--fair-window SECONDS`` (a longer
contention run at the most contenders, for the fairness figures).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ._runner import FIGURES, RACING_KEY, SYSTEM_LABELS, Options, run
from ._sizes import full, quick

SYSTEMS = tuple(key for key in SYSTEM_LABELS if key != RACING_KEY)
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _figures(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [f for f in chosen if f not in FIGURES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown figures {unknown}; choose from {FIGURES}")
    return chosen


def _systems(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [key for key in chosen if key not in SYSTEMS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown systems {unknown}; choose from {SYSTEMS}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report directory")
    parser.add_argument("--kubeconfig", type=Path, help="use this cluster instead of starting one")
    parser.add_argument("--kubectl", type=Path, help="use this kubectl instead of building one")
    parser.add_argument("--only", type=_figures, default=FIGURES, help=",".join(FIGURES))
    parser.add_argument("--systems", type=_systems, default=None, help=",".join(SYSTEMS))
    parser.add_argument(
        "--fair-window",
        type=float,
        default=None,
        help="seconds of the contention run at the most contenders (default: the same as the "
        "others); about 40 gives the fairness figures 1,000 acquisitions or more",
    )
    args = parser.parse_args(argv)

    sizes = quick() if args.quick else full()
    if args.fair_window is not None:
        sizes = dataclasses.replace(sizes, fair_window=args.fair_window)
    options = Options(
        sizes=sizes,
        kubeconfig=args.kubeconfig,
        kubectl=args.kubectl,
        only=args.only,
        systems=args.systems,
        log=_log,
    )
    results = run(options)

    from ._report import text_summary, write_report

    charts: list[str] = []
    chart_error = ""
    try:
        from ._charts import draw

        charts = draw(results, args.out)
    except ImportError as exc:
        chart_error = f"matplotlib is not installed ({exc}); pip install -e '.[bench]'"
    report = write_report(results, args.out, charts, chart_error)
    print(text_summary(results))
    print()
    print(f"report: {report}")
    for chart in charts:
        print(f"chart: {chart}")
    if chart_error:
        print(f"charts: {chart_error}")
    return 1 if results.problems else 0


if __name__ == "__main__":
    sys.exit(main())
