"""Locate, build and cache the etcd and kube-apiserver binaries.

The binaries are built from Go modules with the local ``go`` tool, using the
wrapper modules shipped in ``lockheed/testing/_go/<component>/`` (a ``go.mod``
and ``go.sum`` that pin the exact versions). A build happens only when the
cached binary is missing; the cache lives outside the repository:

* ``$LOCKHEED_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/lockheed``, else
  ``~/.cache/lockheed``;
* binaries go to ``<cache>/bin/<name>-<version>/<name>``.

``$LOCKHEED_KUBE_ASSETS`` (or, failing that, envtest's ``$KUBEBUILDER_ASSETS``)
may name a directory holding ready-made ``etcd`` and ``kube-apiserver``
binaries; then nothing is built or cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO

__all__ = [
    "ETCD_VERSION",
    "KUBE_VERSION",
    "Binaries",
    "BuildError",
    "binary_path",
    "cache_dir",
    "ensure_binaries",
    "format_duration",
]

ETCD_VERSION = "v3.6.16"
KUBE_VERSION = "v1.35.4"

ASSETS_ENV = "LOCKHEED_KUBE_ASSETS"
ENVTEST_ASSETS_ENV = "KUBEBUILDER_ASSETS"
CACHE_ENV = "LOCKHEED_CACHE_DIR"

_PROGRESS_EVERY_PACKAGES = 20
_PROGRESS_EVERY_SECONDS = 15.0
_LOG_LINES_ON_ERROR = 40

Progress = Callable[[str], None]


class BuildError(RuntimeError):
    """The binaries could not be found or built."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the control-plane executables."""

    etcd: Path
    kube_apiserver: Path


@dataclass(frozen=True)
class _Component:
    name: str
    module: str
    package: str
    version: str
    ldflags: str | None = None


_ETCD = _Component(
    name="etcd",
    module="go.etcd.io/etcd/server/v3",
    package="go.etcd.io/etcd/server/v3",
    version=ETCD_VERSION,
)
_KUBE_APISERVER = _Component(
    name="kube-apiserver",
    module="k8s.io/kubernetes",
    package="k8s.io/kubernetes/cmd/kube-apiserver",
    version=KUBE_VERSION,
    ldflags=f"-X k8s.io/component-base/version.gitVersion={KUBE_VERSION}",
)


def cache_dir() -> Path:
    """The cache root.

    ``$LOCKHEED_CACHE_DIR``, else ``$XDG_CACHE_HOME/lockheed``, else ``~/.cache/lockheed``.
    """
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lockheed"


def binary_path(name: str, version: str) -> Path:
    """Where the cached binary ``name`` at ``version`` lives."""
    return cache_dir() / "bin" / f"{name}-{version}" / name


def format_duration(seconds: float) -> str:
    """Format a duration as ``1m05s`` or ``4.2s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _assets_from_env() -> Binaries | None:
    for variable in (ASSETS_ENV, ENVTEST_ASSETS_ENV):
        value = os.environ.get(variable)
        if not value:
            continue
        directory = Path(value).expanduser()
        found = Binaries(directory / "etcd", directory / "kube-apiserver")
        missing = [p for p in (found.etcd, found.kube_apiserver) if not _is_executable(p)]
        if missing:
            names = ", ".join(str(p) for p in missing)
            raise BuildError(
                f"${variable}={value} is set but these executables are missing: {names}"
            )
        return found
    return None


def _wrapper_file(component: _Component, filename: str) -> bytes:
    traversable = (
        resources.files("lockheed.testing").joinpath("_go").joinpath(component.name)
    ).joinpath(filename)
    return traversable.read_bytes()


def _verify_pinned_version(component: _Component) -> None:
    go_mod = _wrapper_file(component, "go.mod").decode()
    pattern = rf"^\s*(?:require\s+)?{re.escape(component.module)}\s+(\S+)"
    match = re.search(pattern, go_mod, flags=re.MULTILINE)
    pinned = match.group(1) if match else None
    if pinned != component.version:
        raise BuildError(
            f"the wrapper go.mod for {component.name} pins {component.module} {pinned}, "
            f"but lockheed expects {component.version}"
        )


def _find_go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "the 'go' tool is not on PATH, so etcd and kube-apiserver cannot be built. "
            "Install Go (https://go.dev/dl/), or set "
            f"${ASSETS_ENV} to a directory that holds 'etcd' and 'kube-apiserver' binaries, "
            "or set $LOCKHEED_TEST_KUBECONFIG to run the tests against an existing cluster."
        )
    return go


@contextlib.contextmanager
def _file_lock(path: Path, progress: Progress) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another process that is building ({path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_command(go: str, component: _Component, output: Path) -> list[str]:
    command = [go, "build", "-v", "-trimpath"]
    if component.ldflags:
        command += ["-ldflags", component.ldflags]
    return [*command, "-o", str(output), component.package]


def _build_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GOWORK"] = "off"
    return env


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _is_package_line(line: str) -> bool:
    # `go build -v` prints one import path per compiled package; everything else
    # (downloads, errors) has spaces or a "go:" prefix.
    return bool(line) and " " not in line and not line.startswith(("go:", "#"))


class _BuildProgress:
    """Turns ``go build -v`` output into periodic progress lines."""

    def __init__(self, name: str, progress: Progress) -> None:
        self._name = name
        self._progress = progress
        self._started = time.monotonic()
        self._last_report = self._started
        self.packages = 0
        self.tail: deque[str] = deque(maxlen=_LOG_LINES_ON_ERROR)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def line(self, text: str) -> None:
        self.tail.append(text)
        if _is_package_line(text):
            self.packages += 1
            if self.packages % _PROGRESS_EVERY_PACKAGES == 0:
                self.report()

    def tick(self) -> None:
        if time.monotonic() - self._last_report >= _PROGRESS_EVERY_SECONDS:
            self.report()

    def report(self) -> None:
        self._last_report = time.monotonic()
        elapsed = format_duration(self.elapsed)
        self._progress(f"building {self._name}: {self.packages} packages compiled, {elapsed}")


def _run_go_build(command: list[str], workdir: Path, status: _BuildProgress) -> int:
    with subprocess.Popen(
        command,
        cwd=workdir,
        env=_build_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True)
        reader.start()
        while True:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                status.tick()
                continue
            if line is None:
                break
            status.line(line)
            status.tick()
        reader.join()
        return process.wait()


def _build(component: _Component, target: Path, progress: Progress) -> None:
    go = _find_go()
    with tempfile.TemporaryDirectory(prefix=f"lockheed-build-{component.name}-") as tmp:
        workdir = Path(tmp)
        for filename in ("go.mod", "go.sum"):
            (workdir / filename).write_bytes(_wrapper_file(component, filename))
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        progress(f"building {component.name} {component.version} with {go} (cached afterwards)")
        status = _BuildProgress(component.name, progress)
        try:
            code = _run_go_build(_build_command(go, component, partial), workdir, status)
            if code != 0:
                output = "\n".join(status.tail)
                raise BuildError(f"go build of {component.name} failed (exit {code}):\n{output}")
            partial.chmod(0o755)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    progress(
        f"built {component.name} {component.version} in {format_duration(status.elapsed)} "
        f"({status.packages} packages): {target}"
    )


def _ensure(component: _Component, progress: Progress) -> Path:
    _verify_pinned_version(component)
    target = binary_path(component.name, component.version)
    if _is_executable(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / ".lock", progress):
        if not _is_executable(target):  # another process may have built it meanwhile
            _build(component, target, progress)
    return target


def _ignore(_message: str) -> None:
    """Discard progress messages."""


def ensure_binaries(progress: Progress | None = None) -> Binaries:
    """Return the etcd and kube-apiserver binaries, building any that are missing.

    ``progress`` receives human-readable status lines while a build runs (a
    cold kube-apiserver build takes minutes). Raises :class:`BuildError` when a
    binary is missing and cannot be built.
    """
    report = progress or _ignore
    from_env = _assets_from_env()
    if from_env is not None:
        return from_env
    return Binaries(
        etcd=_ensure(_ETCD, report),
        kube_apiserver=_ensure(_KUBE_APISERVER, report),
    )
