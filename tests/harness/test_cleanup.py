"""The command line and the pytest plugin leave no processes or files behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockheed.testing import ControlPlane
from lockheed.testing.plugin import KUBECONFIG_ENV

pytestmark = [
    pytest.mark.skipif(bool(os.environ.get(KUBECONFIG_ENV)), reason="starts local control planes"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and PDEATHSIG"),
]

EXIT_TIMEOUT = 30.0
PLUGIN = "lockheed.testing.plugin"
INNER = ["-m", "lockheed_kube", "test_inner.py"]


def _pid_alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (orphans are reaped by init, later)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children


def _wait_until_gone(pids: list[int]) -> list[int]:
    """Poll (with a deadline) until the processes have exited; return the survivors."""
    deadline = time.monotonic() + EXIT_TIMEOUT
    while any(_pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if _pid_alive(pid)]


@pytest.fixture
def up() -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """``python -m lockheed.testing up``, once it has printed its kubeconfig."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lockheed.testing", "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    match = re.fullmatch(r"export KUBECONFIG=(\S+)\n", first)
    try:
        assert match, f"unexpected output {first!r}"
        yield process, Path(match.group(1))
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


def test_up_stops_cleanly_on_sigterm(up: tuple[subprocess.Popen[str], Path]) -> None:
    process, kubeconfig = up
    children = _children(process.pid)
    assert len(children) == 2

    process.send_signal(signal.SIGTERM)

    assert process.wait(EXIT_TIMEOUT) == 0
    assert _wait_until_gone(children) == []
    assert not kubeconfig.parent.exists()


def test_killed_parent_leaves_no_orphans(up: tuple[subprocess.Popen[str], Path]) -> None:
    process, kubeconfig = up
    children = _children(process.pid)
    assert len(children) == 2

    process.send_signal(signal.SIGKILL)
    process.wait(EXIT_TIMEOUT)

    assert _wait_until_gone(children) == []
    assert kubeconfig.parent.exists()  # nothing could clean up after SIGKILL ...
    ControlPlane().start().stop()
    assert not kubeconfig.parent.exists()  # ... until the next control plane starts


def test_failed_kube_test_report_carries_apiserver_log(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(
        "def test_fails(lockheed_cluster):\n    assert False\n\ndef test_plain():\n    pass\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", PLUGIN, *INNER],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT * 2,
        check=False,
    )

    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 deselected" in result.stdout
    assert "kube-apiserver log (last 50 lines)" in result.stdout
