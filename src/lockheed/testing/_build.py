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

Progress: :func:`ensure_binaries` says at once whether the binaries are cached
(later runs start in seconds) or what a first run builds (names, versions, a
rough estimate of the time it takes on this machine), then, while ``go build
-v`` runs, the first module download and the first compiled package at once
and a line every :data:`PROGRESS_EVERY_SECONDS` (packages compiled so far, the
latest one, elapsed time, the time the estimate leaves). A failed build raises
:class:`BuildError` with the last lines of its output; the cache never holds a
partial binary (it is written aside and renamed into place).
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
    "estimate_seconds",
    "format_duration",
]

ETCD_VERSION = "v3.6.16"
KUBE_VERSION = "v1.35.4"

ASSETS_ENV = "LOCKHEED_KUBE_ASSETS"
ENVTEST_ASSETS_ENV = "KUBEBUILDER_ASSETS"
CACHE_ENV = "LOCKHEED_CACHE_DIR"

PROGRESS_EVERY_SECONDS = 10.0
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
    #: CPU-seconds a cold build takes, roughly (for the first run's estimate).
    cpu_seconds: float = 0.0
    #: A directory holding the module to build; None: the pinned wrapper module
    #: shipped in ``lockheed/testing/_go/<name>/``.
    source: Path | None = None


_ETCD = _Component(
    name="etcd",
    module="go.etcd.io/etcd/server/v3",
    package="go.etcd.io/etcd/server/v3",
    version=ETCD_VERSION,
    cpu_seconds=240.0,
)
_KUBE_APISERVER = _Component(
    name="kube-apiserver",
    module="k8s.io/kubernetes",
    package="k8s.io/kubernetes/cmd/kube-apiserver",
    version=KUBE_VERSION,
    ldflags=f"-X k8s.io/component-base/version.gitVersion={KUBE_VERSION}",
    cpu_seconds=1100.0,  # about 10 minutes on a busy 2-CPU machine
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


def _cpus() -> int:
    """CPUs a build can use (go build runs about that many compilers at once)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    return max(1, count)


def estimate_seconds(cpu_seconds: float, cpus: int | None = None) -> float:
    """A rough wall-clock estimate of a cold build taking ``cpu_seconds`` of CPU."""
    return cpu_seconds / min(cpus or _cpus(), 8)


def _about(seconds: float) -> str:
    """``about 9 minutes``, ``about 1 minute``, ``under a minute``."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    return f"about {minutes} minute{'s' if minutes != 1 else ''}"


class _BuildProgress:
    """Turns ``go build -v`` output into progress lines.

    The first module download and the first compiled package are reported at
    once; after that, one line every :data:`PROGRESS_EVERY_SECONDS` (also while
    the output is silent, e.g. while linking), with the packages compiled so
    far, the latest one, the elapsed time and what the estimate leaves.
    """

    def __init__(
        self,
        name: str,
        progress: Progress,
        estimate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._progress = progress
        self._estimate = estimate
        self._clock = clock
        self._started = clock()
        self._last_report = self._started
        self.packages = 0
        self.downloads = 0
        self.latest = ""
        self.tail: deque[str] = deque(maxlen=_LOG_LINES_ON_ERROR)

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started

    def line(self, text: str) -> None:
        self.tail.append(text)
        if text.startswith("go: downloading "):
            self.downloads += 1
            if self.downloads == 1:
                self._say(f"downloading Go modules ({text.removeprefix('go: downloading ')})")
        elif _is_package_line(text):
            self.packages += 1
            self.latest = text
            if self.packages == 1:
                self._say(f"compiling, first package {text}")
        self.tick()

    def tick(self) -> None:
        if self._clock() - self._last_report >= PROGRESS_EVERY_SECONDS:
            self.report()

    def report(self) -> None:
        if self.packages:
            what = f"{self.packages} packages compiled (latest {self.latest})"
        elif self.downloads:
            what = f"{self.downloads} Go modules downloaded"
        else:
            what = "starting go build"
        self._say(f"{what}, {format_duration(self.elapsed)} elapsed{self._left()}")

    def _left(self) -> str:
        if not self._estimate:
            return ""
        left = self._estimate - self.elapsed
        if left < 60:
            return ", nearly done by the first-run estimate"
        return f", {_about(left).removeprefix('about ')} left by the first-run estimate"

    def _say(self, message: str) -> None:
        self._last_report = self._clock()
        self._progress(f"building {self._name}: {message}")


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


def _prepare(component: _Component, workdir: Path) -> None:
    """Put the module to build into ``workdir``."""
    if component.source is not None:
        shutil.copytree(component.source, workdir, dirs_exist_ok=True)
        return
    for filename in ("go.mod", "go.sum"):
        (workdir / filename).write_bytes(_wrapper_file(component, filename))


def _build(component: _Component, target: Path, progress: Progress) -> None:
    go = _find_go()
    with tempfile.TemporaryDirectory(prefix=f"lockheed-build-{component.name}-") as tmp:
        workdir = Path(tmp)
        _prepare(component, workdir)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        estimate = estimate_seconds(component.cpu_seconds) if component.cpu_seconds else None
        guess = f", {_about(estimate)}" if estimate else ""
        progress(f"building {component.name} {component.version} with {go}{guess}")
        status = _BuildProgress(component.name, progress, estimate)
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
    target = binary_path(component.name, component.version)
    if _is_executable(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / ".lock", progress):
        if not _is_executable(target):  # another process may have built it meanwhile
            _build(component, target, progress)
    return target


def _names(components: list[_Component]) -> str:
    return " and ".join(f"{c.name} {c.version}" for c in components)


def _missing(components: list[_Component]) -> list[_Component]:
    """Those of ``components`` whose binary is not in the cache."""
    return [c for c in components if not _is_executable(binary_path(c.name, c.version))]


def _ensure_components(components: list[_Component], progress: Progress) -> list[Path]:
    """The binaries of ``components``, building the missing ones; says which at once."""
    for component in components:
        if component.source is None:
            _verify_pinned_version(component)
    missing = _missing(components)
    where = cache_dir() / "bin"
    cached = [c for c in components if c not in missing]
    if cached:
        progress(f"{_names(cached)}: cached in {where}, no build needed")
    if missing:
        cpu_seconds = sum(c.cpu_seconds for c in missing)
        guess = f" ({_about(estimate_seconds(cpu_seconds))} with {_cpus()} CPUs)"
        progress(
            f"first run only: building {_names(missing)} from source"
            f"{guess if cpu_seconds else ''}; "
            f"the binaries are cached in {where}, so later runs start in seconds"
        )
    return [_ensure(component, progress) for component in components]


def missing_binaries() -> list[str]:
    """The binaries a run would build first, as ``"<name> <version>"``: none when cached.

    Binaries named by ``$LOCKHEED_KUBE_ASSETS`` or ``$KUBEBUILDER_ASSETS`` are never
    built (a missing one there is an error when the control plane starts).
    """
    if any(os.environ.get(variable) for variable in (ASSETS_ENV, ENVTEST_ASSETS_ENV)):
        return []
    return [f"{c.name} {c.version}" for c in _missing([_ETCD, _KUBE_APISERVER])]


def _ignore(_message: str) -> None:
    """Discard progress messages."""


def ensure_binaries(progress: Progress | None = None) -> Binaries:
    """Return the etcd and kube-apiserver binaries, building any that are missing.

    ``progress`` receives human-readable status lines: at once, whether the
    binaries are cached or what a first run builds and roughly how long it
    takes; while a build runs (a cold kube-apiserver build takes minutes),
    its progress. Raises :class:`BuildError` when a binary is missing and
    cannot be built.
    """
    report = progress or _ignore
    from_env = _assets_from_env()
    if from_env is not None:
        return from_env
    etcd, kube_apiserver = _ensure_components([_ETCD, _KUBE_APISERVER], report)
    return Binaries(etcd=etcd, kube_apiserver=kube_apiserver)
