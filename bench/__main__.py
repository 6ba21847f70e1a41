"""``python -m bench``: run the benchmarks, print one table, write the report.

Options: ``--quick`` (the least of each figure, under a minute), ``--out DIR`` (default
``bench/results``), ``--kubeconfig PATH`` (use an existing cluster whose user
may read ``/metrics`` and create namespaces, instead of starting one),
``--kubectl PATH`` (use this kubectl instead of building one), ``--only
FIGURES`` (a comma-separated subset of imports, ops, cycle, handoff, renewal,
many, contention, election, listing), ``--systems KEYS`` (a comma-separated
subset of lockheed-sync, lockheed-async, lockheed-lease, sherlock,
leaderelection, go-lockheed; default all), ``--fair-window SECONDS`` (the
contention run at the most contenders; 40 s by default, for the fairness
figures),
``--contenders COUNTS`` (a comma-separated subset of the contender counts,
e.g. ``32``), ``--rows ROWS`` (a comma-separated subset of the contention
rows: fair, racing, shared; the shared rows, a semaphore of 4 and a shared
lock with 90% readers, run at the most contenders). For example, the shared
rows next to the mutex's at 32 contenders::

    python -m bench --only contention --systems lockheed-sync --contenders 32 --rows fair,shared
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ._runner import FIGURES, RACING_KEY, ROWS, SYSTEM_LABELS, Options, run
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


def _rows(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [row for row in chosen if row not in ROWS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown rows {unknown}; choose from {ROWS}")
    return chosen


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of counts: {text!r}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"contender counts must be 1 or more: {text!r}")
    return counts


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
        help="seconds of the contention run at the most contenders (default 40, which gives the "
        "fairness figures 1,000 acquisitions or more; --quick: the same as the others)",
    )
    parser.add_argument(
        "--contenders", type=_counts, default=None, help="contender counts, e.g. 2,8,32"
    )
    parser.add_argument("--rows", type=_rows, default=ROWS, help=",".join(ROWS))
    args = parser.parse_args(argv)

    sizes = quick() if args.quick else full()
    if args.fair_window is not None:
        sizes = dataclasses.replace(sizes, fair_window=args.fair_window)
    if args.contenders is not None:
        sizes = dataclasses.replace(sizes, contenders=args.contenders)
    options = Options(
        sizes=sizes,
        kubeconfig=args.kubeconfig,
        kubectl=args.kubectl,
        only=args.only,
        systems=args.systems,
        rows=args.rows,
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
