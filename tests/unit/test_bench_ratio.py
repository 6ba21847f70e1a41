"""The bench's contended-throughput verdict (bench/_report.py), on made-up results.

The fewest contenders run again right after the most; the ratio divides the
rate at the most by the mean of the two runs at the fewest.
"""

from __future__ import annotations

from pathlib import Path

from bench._host import cpu_times, steal_share
from bench._report import targets
from bench._results import Contention, Requests, Results

TARGET = "contended throughput at 32 contenders ≥ 0.8 x at 2"


def row(contenders: int, per_s: float, steal: float | None = None) -> Contention:
    window = 10.0
    acquisitions = round(per_s * window)
    return Contention(
        contenders=contenders,
        window=window,
        acquisitions=acquisitions,
        handoffs=acquisitions,
        all_acquisitions=acquisitions,
        requests=Requests({"configmaps PUT": 2.0 * acquisitions}),
        steal=steal,
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


def test_the_host_cpu_stolen_in_each_run_is_shown_beside_its_rate() -> None:
    res = results(90.0, 80.0, 130.0)
    res.contention["lockheed-sync"] = {2: row(2, 90.0, 0.18), 32: row(32, 80.0, 0.05)}
    res.contention_again["lockheed-sync"] = row(2, 130.0, 0.0)
    measured, result, ratio = verdict(res)
    assert "sync (90/s (steal 18.0%) before, 130/s (steal 0.0%) after) → 80/s (steal 5.0%)" in (
        measured
    )
    assert "async (90/s before, 130/s after) → 80/s" in measured  # not known: not shown
    assert result == "not met" and "sync 0.73x" in ratio


def test_steal_is_the_stolen_share_of_the_cpu_time_between_two_reads(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 0 0 0 50 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    before = cpu_times(stat)
    stat.write_text("cpu  400 0 100 1000 10 0 10 230 70 0\n")  # guest time is inside user time
    after = cpu_times(stat)
    assert before == (100, 0, 50, 800, 0, 0, 0, 50, 0, 0)
    assert steal_share(before, after) == 180 / (300 + 50 + 200 + 10 + 10 + 180)
    assert steal_share(before, before) is None  # no time passed
    assert steal_share(None, after) is None


def test_steal_is_unknown_without_a_readable_cpu_line(tmp_path: Path) -> None:
    assert cpu_times(tmp_path / "missing") is None
    stat = tmp_path / "stat"
    stat.write_text("intr 1 2 3\n")
    assert cpu_times(stat) is None
    stat.write_text("cpu 1 2 3\n")  # an old kernel's line, without steal
    assert cpu_times(stat) is None
