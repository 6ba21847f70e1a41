"""The benchmark suite end to end at its smallest size: ``python -m bench --quick``.

It proves that every figure still runs, not what it measures: ``--quick``'s
sizes (bench/_sizes.py) are the least that runs each code path.

It runs against the test session's API server (``--kubeconfig``), so it also
covers the suite's support for an existing cluster. No timing is asserted:
only that the run succeeded, that every lockheed figure was measured, that the
systems that cannot be measured say why, and that the report (and the charts,
when matplotlib is installed) were written.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

import golockheed
from support import CROWD

ROOT = Path(__file__).resolve().parent.parent
LOCKHEED = ("lockheed-sync", "lockheed-async")
OPS = ("acquire-new", "acquire-free", "renew", "release")


@CROWD
@pytest.mark.timeout(600)  # kubectl is built from its Go module on first use
def test_quick_bench_runs_every_figure(lockheed_kubeconfig: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [sys.executable, "-m", "bench", "--quick", "--out", str(out)]
    command += ["--kubeconfig", str(lockheed_kubeconfig)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=540, check=False
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-6000:]}"
    assert "Targets:" in done.stdout

    results = json.loads((out / "results.json").read_text())
    assert results["problems"] == []
    for key in LOCKHEED:
        for op in OPS:
            assert "requests" in results["ops"][key][op], (key, op)
        assert results["cycle"][key]["samples"], key
        assert results["handoff"][key]["samples"], key
        assert "requests" in results["renewal"][key], key
        for contention in results["contention"][key].values():
            assert contention["acquisitions"] > 0, key
            assert contention["fairness"]["acquisitions"] >= contention["acquisitions"], key
        # the fewest contenders again, after the most (the ratio's second reference)
        assert results["contention_again"][key]["acquisitions"] > 0, key
    # bench/_sizes.py's quick(): 2 contenders, and 4 tasks in 2 processes
    assert len(results["contention"]["lockheed-async"]) == 2
    for contention in results["contention"]["lockheed-racing"].values():
        assert contention["fairness"]["acquisitions"] > 0
    for key in ("lockheed-semaphore", "lockheed-rw"):  # a Semaphore of 4; 90% shared
        (contention,) = results["contention"][key].values()
        assert contention["acquisitions"] > 0, key
    assert results["raw_put"]["samples"]
    assert results["held_many"]["locks"] > 0
    # LeaderElector, the kubernetes client's, and client-go's (required in CI)
    for key in ("lockheed-sync", "leaderelection", "client-go"):
        if key == "leaderelection" and importlib.util.find_spec("kubernetes") is None:
            continue
        election = results["election"][key]
        if key == "client-go" and "reason" in election and not golockheed.required():
            continue  # the client-go program cannot be built here; the report says why
        assert election["after_exit"]["samples"] and election["after_kill"]["samples"], key
        assert "requests" in election["leader"] and "requests" in election["with_candidate"], key
    assert results["held_many_httpx2"]["locks"] > 0
    assert [item["locks"] for item in results["listing"]] == [5, 10]
    assert "importtime_us" in results["imports"]["lockheed"]

    report = (out / "report.md").read_text()
    for heading in ("## Results", "## Targets", "## Details", "## Method"):
        assert heading in report
    assert "Go lockheed v0.5.3" in report
    # Measured where the Go program can be built or is cached; otherwise said why not.
    go_measured = "measured through the Go program tests/golockheed" in report
    assert go_measured or ("cannot be built" in report and "from its source" in report)
    assert go_measured or not golockheed.required()  # in CI the column is measured
    if go_measured:  # every figure of Go lockheed's column, contention included
        for op in OPS:
            assert "requests" in results["ops"]["go-lockheed"][op], op
        assert results["cycle"]["go-lockheed"]["samples"]
        for contention in results["contention"]["go-lockheed"].values():
            assert contention["acquisitions"] > 0
    for op in OPS:  # the Lease rows beside the ConfigMap ones
        assert "requests" in results["ops"]["lockheed-lease"][op], op
    assert results["cycle"]["lockheed-lease"]["samples"]
    assert results["handoff"]["lockheed-lease"]["samples"]
    assert "requests" in results["renewal"]["lockheed-lease"]
    if importlib.util.find_spec("matplotlib") is not None:
        for chart in ("handoff.png", "throughput.png", "fairness.png", "listing.png"):
            assert (out / chart).stat().st_size > 0, chart
