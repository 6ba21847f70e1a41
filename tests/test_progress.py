"""What a first run shows while etcd and kube-apiserver are built, and what later runs say.

A real ``go build -v`` of a tiny local module (no network: ``GOPROXY=off``)
goes through the same path as the control plane's binaries, into a temporary
cache directory; the shared cache is only read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from lockheed.testing import _build
from lockheed.testing.plugin import KUBECONFIG_ENV

needs_go = pytest.mark.skipif(shutil.which("go") is None, reason="needs the go tool")


def _tiny_module(directory: Path) -> str:
    """A module of two packages; a fresh stamp makes ``go build`` compile both."""
    stamp = uuid.uuid4().hex
    (directory / "greet").mkdir(parents=True)
    (directory / "go.mod").write_text("module example.com/tiny\n\ngo 1.21\n")
    (directory / "greet" / "greet.go").write_text(
        f'package greet\n\nconst Hello = "hello {stamp}"\n'
    )
    (directory / "main.go").write_text(
        'package main\n\nimport (\n\t"os"\n\n\t"example.com/tiny/greet"\n)\n\n'
        'func main() { os.Stdout.WriteString(greet.Hello + "\\n") }\n'
    )
    return stamp


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A temporary cache directory, and a Go that cannot reach the network."""
    directory = tmp_path / "cache"
    monkeypatch.setenv(_build.CACHE_ENV, str(directory))
    monkeypatch.setenv("GOPROXY", "off")
    monkeypatch.setenv("GOTOOLCHAIN", "local")
    monkeypatch.setenv("GOFLAGS", "-mod=mod")
    return directory


def _position(messages: list[str], start: str) -> int:
    found = [i for i, message in enumerate(messages) if message.startswith(start)]
    assert found, f"no progress line starting {start!r} in {messages}"
    return found[0]


@needs_go
def test_a_first_build_shows_its_progress_in_order_and_a_later_run_says_cached(
    cache: Path, tmp_path: Path
) -> None:
    source = tmp_path / "tiny"
    stamp = _tiny_module(source)
    tiny = _build._Component(
        name="tiny",
        module="example.com/tiny",
        package="example.com/tiny",
        version="v0.0.1",
        cpu_seconds=120.0,
        source=source,
    )
    messages: list[str] = []

    [binary] = _build._ensure_components([tiny], messages.append)

    steps = [
        "first run only: building tiny v0.0.1 from source (about ",
        "building tiny v0.0.1 with ",
        "building tiny: compiling, first package example.com/tiny",
        "built tiny v0.0.1 in ",
    ]
    positions = [_position(messages, step) for step in steps]
    assert positions == sorted(positions), messages
    assert f"cached in {cache / 'bin'}, so later runs start in seconds" in messages[0]
    assert messages[-1].endswith(f"(2 packages): {binary}")
    assert binary == cache / "bin" / "tiny-v0.0.1" / "tiny"
    ran = subprocess.run([binary], capture_output=True, text=True, check=True, timeout=30)
    assert ran.stdout == f"hello {stamp}\n"

    built = binary.stat().st_mtime_ns
    again: list[str] = []
    assert _build._ensure_components([tiny], again.append) == [binary]
    assert again == [f"tiny v0.0.1: cached in {cache / 'bin'}, no build needed"]
    assert binary.stat().st_mtime_ns == built  # not built again


@needs_go
def test_a_failed_build_leaves_nothing_in_the_cache(cache: Path, tmp_path: Path) -> None:
    source = tmp_path / "broken"
    _tiny_module(source)
    (source / "main.go").write_text("package main\n\nfunc main() { undefined() }\n")
    broken = _build._Component(
        name="broken", module="example.com/tiny", package="example.com/tiny", version="v1",
        source=source,
    )  # fmt: skip

    with pytest.raises(_build.BuildError, match="undefined"):
        _build._ensure_components([broken], lambda _message: None)
    directory = cache / "bin" / "broken-v1"
    assert [p.name for p in directory.iterdir()] == [".lock"]


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_build_output_becomes_timed_progress_lines() -> None:
    clock = _Clock()
    messages: list[str] = []
    status = _build._BuildProgress("etcd", messages.append, estimate=300.0, clock=clock)

    status.line("go: downloading go.etcd.io/bbolt v1.4.3")
    status.line("go: downloading go.uber.org/zap v1.27.0")
    status.line("internal/goarch")
    for i in range(44):
        status.line(f"example.com/p{i}")
    clock.now += _build.PROGRESS_EVERY_SECONDS - 1
    status.tick()
    assert messages == [
        "building etcd: downloading Go modules (go.etcd.io/bbolt v1.4.3)",
        "building etcd: compiling, first package internal/goarch",
    ]

    clock.now += 1  # silent output (linking, say) still gets a line on time
    status.tick()
    assert messages[2:] == [
        "building etcd: 45 packages compiled (latest example.com/p43), 10.0s elapsed, "
        "5 minutes left by the first-run estimate"
    ]
    assert status.packages == 45
    assert status.downloads == 2

    clock.now += 300
    status.tick()
    assert messages[3].endswith("5m10s elapsed, nearly done by the first-run estimate")


def test_the_estimate_scales_with_the_cpus() -> None:
    assert _build.estimate_seconds(1200.0, cpus=2) == 600.0
    assert _build.estimate_seconds(1200.0, cpus=64) == 150.0  # go build uses about 8
    assert _build._about(540.0) == "about 9 minutes"
    assert _build._about(20.0) == "under a minute"


@pytest.mark.skipif(bool(os.environ.get(KUBECONFIG_ENV)), reason="uses the local control plane")
def test_the_build_command_says_the_binaries_are_cached() -> None:
    # The shared cache: the session's control plane was started from it.
    _build.ensure_binaries()
    done = subprocess.run(
        [sys.executable, "-m", "lockheed.testing", "build"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    cached = f"etcd {_build.ETCD_VERSION} and kube-apiserver {_build.KUBE_VERSION}: cached in "
    assert done.stderr.startswith(cached), done.stderr
    assert "no build needed" in done.stderr
    assert "building" not in done.stderr


def _pytest_with_the_plugin(
    directory: Path, *args: str, cache_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """A pytest run of its own in ``directory`` with lockheed's plugin, none of this
    run's ``PYTEST_*`` settings, and (given ``cache_dir``) that cache of binaries
    and none named by the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    if cache_dir is not None:
        for variable in (_build.ASSETS_ENV, _build.ENVTEST_ASSETS_ENV, KUBECONFIG_ENV):
            env.pop(variable, None)
        env[_build.CACHE_ENV] = str(cache_dir)
    plugins = ["-p", "no:cacheprovider", "-p", "lockheed.testing.plugin"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *plugins, *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )


_SESSION_TEST = """
from pathlib import Path

def test_uses_the_cluster(lockheed_kubeconfig: Path) -> None:
    print("output of the test, captured")
    assert lockheed_kubeconfig.is_file()
"""


@pytest.mark.skipif(bool(os.environ.get(KUBECONFIG_ENV)), reason="starts a local control plane")
def test_pytest_shows_the_start_up_past_output_capture(tmp_path: Path) -> None:
    _build.ensure_binaries()  # cached, as for any later run
    (tmp_path / "test_session.py").write_text(_SESSION_TEST)
    done = _pytest_with_the_plugin(tmp_path, "test_session.py")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("[lockheed] ")]
    steps = [
        "[lockheed] etcd ",  # ... and kube-apiserver ...: cached in ..., no build needed
        "[lockheed] starting etcd on 127.0.0.1:",
        "[lockheed] etcd up in ",
        "[lockheed] starting kube-apiserver on 127.0.0.1:",
        "[lockheed] kube-apiserver healthy in ",
        "[lockheed] control plane ready in ",
    ]
    assert [_position(lines, step) for step in steps] == list(range(len(steps))), lines
    assert "no build needed" in lines[0]
    assert "output of the test, captured" not in done.stdout  # capture still works


_PLAIN_TEST = """
def test_needs_no_cluster() -> None:
    assert True
"""


def _xdist_run(directory: Path, cache_dir: Path) -> subprocess.CompletedProcess[str]:
    """``pytest -n 2`` with the plugin in ``directory``, the binaries' cache in ``cache_dir``."""
    (directory / "test_plain.py").write_text(_PLAIN_TEST)
    return _pytest_with_the_plugin(directory, "-n", "2", "test_plain.py", cache_dir=cache_dir)


def test_under_xdist_missing_binaries_are_announced_before_the_workers_start(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "cache"
    done = _xdist_run(tmp_path, empty)
    assert done.returncode == 0, done.stdout + done.stderr
    notice = [line for line in done.stdout.splitlines() if line.startswith("[lockheed] ")]
    assert notice == [
        f"[lockheed] etcd {_build.ETCD_VERSION} and kube-apiserver {_build.KUBE_VERSION}: "
        "not built yet; the first pytest-xdist worker that needs them builds them "
        "(minutes, once) and its progress is not shown; "
        "`python -m lockheed.testing build` builds them with progress"
    ], done.stdout
    assert done.stdout.index("[lockheed] ") < done.stdout.index("bringing up nodes")
    assert not empty.exists()  # no test needed the cluster: nothing was built


@pytest.mark.skipif(bool(os.environ.get(KUBECONFIG_ENV)), reason="uses the local control plane")
def test_under_xdist_cached_binaries_need_no_notice(tmp_path: Path) -> None:
    _build.ensure_binaries()  # the shared cache, as for any later run
    done = _xdist_run(tmp_path, _build.cache_dir())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[lockheed]" not in done.stdout
    assert "1 passed" in done.stdout
