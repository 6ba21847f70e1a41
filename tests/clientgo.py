"""The client-go test program (``tests/clientgo``), built once and cached.

:func:`clientgo_binary` returns the path of the program, which links
``k8s.io/client-go`` v0.35.4, the client of the control plane's Kubernetes
v1.35.4. It lives in lockheed's binary cache (see
:mod:`lockheed.testing._build`) at ``<cache>/bin/clientgo-v0.35.4/clientgo``,
next to a ``.sources`` file holding a digest of the sources it was built from.
When that binary is missing, or was built from other sources, it is built with
the local ``go`` tool from ``tests/clientgo`` through the ordinary module proxy,
checked against the committed ``go.sum`` (``-mod=readonly``).

When the program cannot be had (no ``go``, or a module cannot be downloaded)
the calling test is skipped, and the skip reason is the first error line of
the failing ``go`` command; with ``$LOCKHEED_REQUIRE_GOLOCKHEED=1`` (which
``.ci/run`` sets in CI, for both Go test programs) the test fails instead, so
that CI never passes with the client-go interoperability unproven. The
outcome is remembered for the session, so a failed build is tried once.
:func:`find_clientgo` is the same lookup without pytest, for the benchmark;
``python tests/clientgo.py`` builds (or finds) the program and prints its
path, or prints why not and exits with status 1.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from golockheed import REQUIRE_ENV, first_error_line, required
from lockheed.testing._build import (
    BuildError,
    _build_env,
    _file_lock,
    _is_executable,
    binary_path,
)

__all__ = ["CLIENT_GO_VERSION", "SOURCE_DIR", "clientgo_binary", "find_clientgo"]

CLIENT_GO_VERSION = "v0.35.4"
SOURCE_DIR = Path(__file__).with_name("clientgo")
_SOURCES = ("go.mod", "go.sum", "main.go")
BUILD_TIMEOUT = 600.0  # downloading and compiling client-go on a slow host

_outcome: Path | str | None = None  # the binary, or why there is none


def sources_digest() -> str:
    digest = hashlib.sha256()
    for name in _SOURCES:
        data = (SOURCE_DIR / name).read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def _stamp(binary: Path) -> Path:
    return binary.with_name(f"{binary.name}.sources")


def _is_current(binary: Path, digest: str) -> bool:
    stamp = _stamp(binary)
    return _is_executable(binary) and stamp.exists() and stamp.read_text().strip() == digest


def _build(target: Path, digest: str) -> None:
    go = shutil.which("go")
    if go is None:
        raise BuildError("the 'go' tool is not on PATH")
    env = _build_env()  # GOWORK=off
    flags = [f for f in env.get("GOFLAGS", "").split() if not f.startswith("-mod=")]
    env["GOFLAGS"] = " ".join([*flags, "-mod=readonly"])
    with tempfile.TemporaryDirectory(prefix="lockheed-build-clientgo-") as tmp:
        workdir = Path(tmp)
        for name in _SOURCES:
            shutil.copyfile(SOURCE_DIR / name, workdir / name)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            done = subprocess.run(
                [go, "build", "-trimpath", "-o", str(partial), "."],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                timeout=BUILD_TIMEOUT,
                check=False,
            )
            if done.returncode != 0:
                raise BuildError(first_error_line(done.stdout))
            partial.chmod(0o755)
            os.replace(partial, target)
        except subprocess.TimeoutExpired:
            raise BuildError(f"`go build` took longer than {BUILD_TIMEOUT} s") from None
        finally:
            partial.unlink(missing_ok=True)
    _stamp(target).write_text(digest + "\n")


def _ensure() -> Path:
    target = binary_path("clientgo", CLIENT_GO_VERSION)
    digest = sources_digest()
    if _is_current(target, digest):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / ".lock", lambda _message: None):
        if not _is_current(target, digest):  # another process may have built it meanwhile
            _build(target, digest)
    return target


def find_clientgo() -> Path | str:
    """The client-go program, or why it cannot be had (built at most once)."""
    global _outcome
    if _outcome is None:
        try:
            _outcome = _ensure()
        except BuildError as error:
            _outcome = f"client-go {CLIENT_GO_VERSION} test program cannot be built: {error}"
    return _outcome


def clientgo_binary() -> Path:
    """The client-go program; skips the calling test when it cannot be built,
    or fails it when the Go test programs are required (in CI)."""
    import pytest

    found = find_clientgo()
    if isinstance(found, str):
        if required():
            pytest.fail(f"{found} (${REQUIRE_ENV} is set)", pytrace=False)
        pytest.skip(found)
    return found


def main() -> int:
    found = find_clientgo()
    if isinstance(found, str):
        print(found, file=sys.stderr)
        return 1
    print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
