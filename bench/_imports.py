"""Figure 7: import time, each import in a fresh interpreter.

Every statement runs ``runs`` times as ``python -X importtime -c '<statement>'``,
round-robin so that drift of the machine hits them alike. The figure is the
median of the cumulative time the interpreter reports for the top-level
packages of the statement (interpreter start-up excluded); the median wall
time of the whole process is kept too, with a bare ``python -c pass`` for
reference.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time

from ._results import ImportTime, NotMeasured
from ._systems import package_version

__all__ = ["STATEMENTS", "import_times"]

# key -> (statement, distributions whose versions are shown)
STATEMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lockheed": ("import lockheed", ("lockheed",)),
    "lightkube": ("import lightkube", ("lightkube",)),
    "kubernetes": ("import kubernetes", ("kubernetes",)),
    "sherlock": ("import sherlock, kubernetes", ("sherlock", "kubernetes")),
    "python": ("pass", ()),
}


def _cumulative(stderr: str, packages: list[str]) -> float:
    """Sum of the cumulative microseconds of the top-level ``packages``."""
    total = 0.0
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line.split("|")
        if len(parts) != 3:
            continue
        name = parts[2].rstrip()
        if name.strip() in packages and name.startswith(" ") and not name.startswith("  "):
            total += float(parts[1])
    return total


def import_times(runs: int) -> dict[str, ImportTime | NotMeasured]:
    out: dict[str, ImportTime | NotMeasured] = {}
    todo: dict[str, tuple[str, list[str]]] = {}
    for key, (statement, _dists) in STATEMENTS.items():
        packages = [p.strip() for p in statement.removeprefix("import ").split(",")]
        if statement != "pass" and any(importlib.util.find_spec(p) is None for p in packages):
            out[key] = NotMeasured("not installed")
            continue
        todo[key] = (statement, [] if statement == "pass" else packages)
    cumulative: dict[str, list[float]] = {k: [] for k in todo}
    wall: dict[str, list[float]] = {k: [] for k in todo}
    for _ in range(runs):
        for key, (statement, packages) in todo.items():
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", statement],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            wall[key].append(time.perf_counter() - start)
            if done.returncode != 0:
                raise RuntimeError(f"{statement!r} failed: {done.stderr[-300:]}")
            cumulative[key].append(_cumulative(done.stderr, packages))
    for key in todo:
        dists = STATEMENTS[key][1]
        version = ", ".join(f"{d} {package_version(d)}" for d in dists) or sys.version.split()[0]
        out[key] = ImportTime(key, version, tuple(cumulative[key]), tuple(wall[key]))
    return out
