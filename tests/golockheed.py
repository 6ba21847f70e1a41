"""The Go lockheed test program (``tests/golockheed``), built once and cached.

:func:`golockheed_binary` returns the path of the program, which links Go
lockheed v0.5.3 (``github.com/goblain/lockheed``). It lives in lockheed's
binary cache (see :mod:`lockheed.testing._build`) at
``<cache>/bin/golockheed-v0.5.3/golockheed``, next to a ``.sources`` file
holding a digest of the sources it was built from. When that binary is
missing, or was built from other sources, it is built with the local ``go``
tool in a temporary copy of ``tests/golockheed``, through the ordinary module
proxy. The module has no ``go.sum`` (one cannot be produced while the proxy
refuses Go lockheed), so the build runs with ``-mod=mod``: go.sum is filled
in as modules are downloaded, each checked against the checksum database.

When the program cannot be had (no ``go``, or the proxy or the checksum
database refuses a module) the calling test is skipped, and the skip reason
is the first error line of the failing ``go`` command (with its indented
continuation, on one line). Go lockheed is downloaded on its own first, so
while the proxy refuses it the reason reads (wrapped here)::

    Go lockheed v0.5.3 cannot be built: go: github.com/goblain/lockheed@v0.5.3:
    reading https://proxy.golang.org/github.com/goblain/lockheed/@v/v0.5.3.info:
    403 Forbidden server response: This module version is not available.

Its dependency ``github.com/goblain/go-retry`` comes next: the checksum
database does not know it (404), so a build also needs
``GONOSUMDB=github.com/goblain/go-retry`` in the environment (which the build
inherits), accepting that module unverified.

The outcome is remembered for the session, so a failed build is tried once.
:func:`find_golockheed` is the same lookup without pytest: the benchmark
(``python -m bench``) loads this file to measure Go lockheed when it can.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from lockheed.testing._build import (
    BuildError,
    _build_env,
    _file_lock,
    _is_executable,
    binary_path,
)

__all__ = [
    "GO_LOCKHEED_MODULE",
    "GO_LOCKHEED_VERSION",
    "SOURCE_DIR",
    "find_golockheed",
    "golockheed_binary",
]

GO_LOCKHEED_MODULE = "github.com/goblain/lockheed"
GO_LOCKHEED_VERSION = "v0.5.3"
SOURCE_DIR = Path(__file__).with_name("golockheed")
_SOURCES = ("go.mod", "go.sum", "main.go")  # go.sum is used when present
# Downloading client-go and its dependencies and compiling them, on a slow host.
BUILD_TIMEOUT = 600.0
_PROGRESS_PREFIXES = ("go: downloading", "go: finding", "go: extracting", "go: added")

_outcome: Path | str | None = None  # the binary, or why there is none


def sources_digest() -> str:
    """A digest of the program's sources: a cached binary is used only if it matches."""
    digest = hashlib.sha256()
    for name in _SOURCES:
        path = SOURCE_DIR / name
        if path.exists():
            digest.update(f"{name}\0{path.stat().st_size}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _stamp(binary: Path) -> Path:
    return binary.with_name(f"{binary.name}.sources")


def _is_current(binary: Path, digest: str) -> bool:
    stamp = _stamp(binary)
    return _is_executable(binary) and stamp.exists() and stamp.read_text().strip() == digest


def first_error_line(output: str) -> str:
    """The first line of ``go`` output that is not progress, with its indented
    continuation lines (such as ``server response: ...``) joined to it."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if not line.strip() or line.startswith(_PROGRESS_PREFIXES):
            continue
        parts = [line.strip()]
        for more in lines[i + 1 :]:
            if not more[:1].isspace() or not more.strip():
                break
            parts.append(more.strip())
        return " ".join(parts)
    return "no error output"


def _go_env() -> dict[str, str]:
    env = _build_env()  # GOWORK=off, as for the control plane's binaries
    flags = [f for f in env.get("GOFLAGS", "").split() if not f.startswith("-mod=")]
    env["GOFLAGS"] = " ".join([*flags, "-mod=mod"])  # no go.sum: record sums as modules arrive
    return env


def _run(command: list[str], workdir: Path) -> None:
    try:
        done = subprocess.run(
            command,
            cwd=workdir,
            env=_go_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BuildError(f"`{' '.join(command[1:])}` took longer than {BUILD_TIMEOUT} s") from None
    if done.returncode != 0:
        raise BuildError(first_error_line(done.stdout))


def _build(target: Path, digest: str) -> None:
    go = shutil.which("go")
    if go is None:
        raise BuildError("the 'go' tool is not on PATH")
    with tempfile.TemporaryDirectory(prefix="lockheed-build-golockheed-") as tmp:
        workdir = Path(tmp)
        for name in _SOURCES:
            if (SOURCE_DIR / name).exists():
                shutil.copyfile(SOURCE_DIR / name, workdir / name)
        # Go lockheed itself first, so that its refusal is what a skip reports
        # (the whole graph would stop first at go-retry, which the checksum
        # database does not know), then everything else.
        _run([go, "mod", "download", f"{GO_LOCKHEED_MODULE}@{GO_LOCKHEED_VERSION}"], workdir)
        _run([go, "mod", "download"], workdir)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            _run([go, "build", "-trimpath", "-o", str(partial), "."], workdir)
            partial.chmod(0o755)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    _stamp(target).write_text(digest + "\n")


def _ensure() -> Path:
    target = binary_path("golockheed", GO_LOCKHEED_VERSION)
    digest = sources_digest()
    if _is_current(target, digest):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / ".lock", lambda _message: None):
        if not _is_current(target, digest):  # another process may have built it meanwhile
            _build(target, digest)
    return target


def find_golockheed() -> Path | str:
    """The Go lockheed program, or why it cannot be had (built at most once)."""
    global _outcome
    if _outcome is None:
        try:
            _outcome = _ensure()
        except BuildError as error:
            _outcome = f"Go lockheed {GO_LOCKHEED_VERSION} cannot be built: {error}"
    return _outcome


def golockheed_binary() -> Path:
    """The Go lockheed program; skips the calling test when it cannot be built."""
    import pytest

    found = find_golockheed()
    if isinstance(found, str):
        pytest.skip(found)
    return found
