"""The Go lockheed test program (``tests/golockheed``), built once and cached.

:func:`golockheed_binary` returns the path of the program, which links Go
lockheed v0.5.3 (``github.com/goblain/lockheed``). It lives in lockheed's
binary cache (see :mod:`lockheed.testing._build`) at
``<cache>/bin/golockheed-v0.5.3/golockheed``, next to a ``.sources`` file
holding a digest of the sources it was built from. When that binary is
missing, or was built from other sources, it is built with the local ``go``
tool in a temporary copy of ``tests/golockheed``.

Where the modules come from. The public module proxy refuses Go lockheed
v0.5.3 ("This module version is not available"), and the checksum database
knows neither ``github.com/goblain/lockheed`` nor its dependency
``github.com/goblain/go-retry``. The build therefore looks first in a
module-proxy directory holding Go lockheed v0.5.3 and go-retry (laid out in
the GOPROXY protocol): ``$LOCKHEED_GOPROXY_DIR`` if set, else
``../shared/goproxy`` beside the repository's root. The build runs with
``GOPROXY=file://<that directory>,<go env GOPROXY>`` (every other module
comes from the usual proxy) and ``GONOSUMDB=github.com/goblain``. The
committed ``go.sum`` pins every module, both goblain ones included, so the
build is ``-mod=readonly``: a module whose content differs from go.sum fails
the build, wherever it came from. Without such a directory the build asks the
usual proxy alone, which refuses Go lockheed.

When the program cannot be had (no ``go``, a ``$LOCKHEED_GOPROXY_DIR`` that
is not a directory, or a module that cannot be downloaded) the calling test
is skipped, and the skip reason is the first error line of the failing ``go``
command (with its indented continuation, on one line), followed by the
GOPROXY used. Go lockheed is downloaded on its own first, so that its refusal
is what the reason names. With ``$LOCKHEED_REQUIRE_GOLOCKHEED=1`` (which
``.ci/run`` sets in CI) the test fails instead: a skip there would hide the
interoperability claim. ``python tests/golockheed.py`` builds (or finds) the
program and prints its path, or prints why not and exits with status 1.

The outcome is remembered for the session, so a failed build is tried once.
:func:`find_golockheed` is the same lookup without pytest: the benchmark
(``python -m bench``) loads this file to measure Go lockheed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from lockheed.testing._build import (
    BuildError,
    _build_env,
    _file_lock,
    _is_executable,
    binary_path,
)

__all__ = [
    "GOPROXY_DIR_ENV",
    "GO_LOCKHEED_MODULE",
    "GO_LOCKHEED_VERSION",
    "REQUIRE_ENV",
    "SOURCE_DIR",
    "find_golockheed",
    "go_env",
    "golockheed_binary",
    "goproxy_dir",
]

GO_LOCKHEED_MODULE = "github.com/goblain/lockheed"
GO_LOCKHEED_VERSION = "v0.5.3"
SOURCE_DIR = Path(__file__).with_name("golockheed")
ROOT = Path(__file__).resolve().parent.parent
GOPROXY_DIR_ENV = "LOCKHEED_GOPROXY_DIR"
REQUIRE_ENV = "LOCKHEED_REQUIRE_GOLOCKHEED"
# Beside the repository's root: where a module-proxy directory holding Go lockheed
# v0.5.3 is looked for when $LOCKHEED_GOPROXY_DIR is not set.
DEFAULT_GOPROXY_DIR = ROOT.parent / "shared" / "goproxy"
NOSUMDB = "github.com/goblain"  # the checksum database knows neither goblain module
_SOURCES = ("go.mod", "go.sum", "main.go")
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


def goproxy_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The module-proxy directory holding Go lockheed, or None when there is none.

    ``$LOCKHEED_GOPROXY_DIR`` when set (it must be a directory: a wrong value is
    an error, never silently ignored), else ``../shared/goproxy`` beside the
    repository's root when it is a directory.
    """
    explicit = (os.environ if environ is None else environ).get(GOPROXY_DIR_ENV)
    if explicit:
        path = Path(explicit).expanduser().resolve()
        if not path.is_dir():
            raise BuildError(f"${GOPROXY_DIR_ENV}={explicit} is not a directory")
        return path
    return DEFAULT_GOPROXY_DIR if DEFAULT_GOPROXY_DIR.is_dir() else None


def _file_url(path: Path) -> str:
    # Percent-encoded, so that a ',' or '|' in the path cannot split GOPROXY's list.
    return "file://" + urllib.parse.quote(str(path), safe="/")


def _default_goproxy(go: str, env: dict[str, str]) -> str:
    """What the go command would use on its own (``go env GOPROXY``)."""
    done = subprocess.run(
        [go, "env", "GOPROXY"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise BuildError(f"`go env GOPROXY` failed: {first_error_line(done.stderr)}")
    return done.stdout.strip()


def go_env(go: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the build: the module-proxy directory (if any) ahead of
    the usual proxy, goblain's modules kept from the checksum database, and the
    committed go.sum authoritative (any ``-mod=`` in GOFLAGS is dropped)."""
    env = _build_env() if environ is None else {**environ, "GOWORK": "off"}
    flags = [f for f in env.get("GOFLAGS", "").split() if not f.startswith("-mod=")]
    env["GOFLAGS"] = " ".join(flags)
    local = goproxy_dir(env)
    usual = _default_goproxy(go, env)
    env["GOPROXY"] = ",".join(filter(None, [_file_url(local) if local else "", usual]))
    nosumdb = [p for p in env.get("GONOSUMDB", "").split(",") if p]
    if NOSUMDB not in nosumdb:
        env["GONOSUMDB"] = ",".join([*nosumdb, NOSUMDB])
    return env


def _run(command: list[str], workdir: Path, env: dict[str, str]) -> None:
    try:
        done = subprocess.run(
            command,
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
    except subprocess.TimeoutExpired:
        raise BuildError(f"`{' '.join(command[1:])}` took longer than {BUILD_TIMEOUT} s") from None
    if done.returncode != 0:
        where = f"GOPROXY={env.get('GOPROXY', '')}"
        if not env.get("GOPROXY", "").startswith("file://"):
            where += (
                f"; no module-proxy directory holding Go lockheed: ${GOPROXY_DIR_ENV} is not "
                "set and there is no ../shared/goproxy beside the repository"
            )
        raise BuildError(f"{first_error_line(done.stdout)} ({where})")


def _build(target: Path, digest: str) -> None:
    go = shutil.which("go")
    if go is None:
        raise BuildError("the 'go' tool is not on PATH")
    env = go_env(go)
    with tempfile.TemporaryDirectory(prefix="lockheed-build-golockheed-") as tmp:
        workdir = Path(tmp)
        for name in _SOURCES:
            shutil.copyfile(SOURCE_DIR / name, workdir / name)
        # Go lockheed itself first, so that a refusal of it is what a skip reports.
        _run([go, "mod", "download", f"{GO_LOCKHEED_MODULE}@{GO_LOCKHEED_VERSION}"], workdir, env)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            _run([go, "build", "-trimpath", "-o", str(partial), "."], workdir, env)
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


def required() -> bool:
    """Whether a missing program must fail the tests (``$LOCKHEED_REQUIRE_GOLOCKHEED=1``)."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def golockheed_binary() -> Path:
    """The Go lockheed program; skips the calling test when it cannot be built,
    or fails it when the program is required."""
    import pytest

    found = find_golockheed()
    if isinstance(found, str):
        if required():
            pytest.fail(f"{found} (${REQUIRE_ENV} is set)", pytrace=False)
        pytest.skip(found)
    return found


def main() -> int:
    found = find_golockheed()
    if isinstance(found, str):
        print(found, file=sys.stderr)
        return 1
    print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
