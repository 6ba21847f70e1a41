"""The bench's contended-throughput verdict (bench/_report.py), on made-up results.

The fewest contenders run again right after the most; the ratio divides the
rate at the most by the mean of the two runs at the fewest.
"""

from __future__ import annotations

from bench._report import targets
from bench._results import Contention, Requests, Results

TARGET = "contended throughput at 32 contenders ≥ 0.8 x at 2"


def row(contenders: int, per_s: float) -> Contention:
    window = 10.0
    acquisitions = round(per_s * window)
    return Contention(
        contenders=contenders,
        window=window,
        acquisitions=acquisitions,
        handoffs=acquisitions,
        all_acquisitions=acquisitions,
        requests=Requests({"configmaps PUT": 2.0 * acquisitions}),
    )


def results(before: float, most: float, after: float | None) -> Results:
    res = Results()
    for key in ("lockheed-sync", "lockheed-async"):
        res.contention[key] = {2: row(2, before), 32: row(32, most)}
        if after is not None:
            res.contention_again[key] = row(2, after)
    res.contention_again_after = 32
    return res


def verdict(res: Results) -> tuple[str, str, str]:
    (found,) = [v for v in targets(res) if v.target.startswith(TARGET)]
    return found.measured, found.verdict, found.ratio


def test_the_ratio_is_taken_against_the_mean_of_the_runs_before_and_after() -> None:
    # 80 / mean(110, 90) = 0.80: met; against the run before alone it would not be.
    measured, result, ratio = verdict(results(110.0, 80.0, 90.0))
    assert result == "met", (measured, ratio)
    assert "sync (110/s before, 90/s after) → 80/s" in measured
    assert "sync 0.80x" in ratio


def test_a_faster_run_after_lowers_the_ratio() -> None:
    measured, result, ratio = verdict(results(90.0, 80.0, 130.0))
    assert result == "not met", (measured, ratio)
    assert "sync 0.73x" in ratio


def test_without_the_run_after_the_run_before_is_the_reference() -> None:
    measured, result, ratio = verdict(results(90.0, 80.0, None))
    assert result == "met"
    assert "sync 90/s → 80/s" in measured
    assert "sync 0.89x" in ratio
