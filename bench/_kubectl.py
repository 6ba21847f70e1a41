"""kubectl for the listing comparison, built from its Go module and cached.

The wrapper module in ``bench/_go/kubectl/`` (``go.mod`` and ``go.sum``, with
``tool k8s.io/kubernetes/cmd/kubectl``) pins the same ``k8s.io/kubernetes``
release as the kube-apiserver that :mod:`lockheed.testing` builds, with the
same ``replace`` lines for its staging modules. The binary is cached next to
etcd and kube-apiserver (``<cache>/bin/kubectl-<version>/kubectl``, see
:func:`lockheed.testing._build.cache_dir`) and built only when missing.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from lockheed.testing._build import (
    KUBE_VERSION,
    BuildError,
    _build_command,
    _BuildProgress,
    _Component,
    _file_lock,
    _find_go,
    _run_go_build,
    binary_path,
    format_duration,
)

__all__ = ["KUBECTL", "ensure_kubectl"]

WRAPPER = Path(__file__).parent / "_go" / "kubectl"
KUBECTL = _Component(
    name="kubectl",
    module="k8s.io/kubernetes",
    package="k8s.io/kubernetes/cmd/kubectl",
    version=KUBE_VERSION,
    ldflags=f"-X k8s.io/component-base/version.gitVersion={KUBE_VERSION}",
)


def _check_pin() -> None:
    go_mod = (WRAPPER / "go.mod").read_text()
    match = re.search(rf"^\s*{re.escape(KUBECTL.module)}\s+(\S+)", go_mod, flags=re.MULTILINE)
    pinned = match.group(1) if match else None
    if pinned != KUBECTL.version:
        raise BuildError(
            f"{WRAPPER / 'go.mod'} pins {KUBECTL.module} {pinned}, expected {KUBECTL.version}"
        )


def _build(target: Path, progress: Callable[[str], None]) -> None:
    go = _find_go()
    with tempfile.TemporaryDirectory(prefix="lockheed-build-kubectl-") as tmp:
        workdir = Path(tmp)
        for filename in ("go.mod", "go.sum"):
            (workdir / filename).write_bytes((WRAPPER / filename).read_bytes())
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        progress(f"building kubectl {KUBECTL.version} with {go} (cached afterwards)")
        status = _BuildProgress("kubectl", progress)
        try:
            code = _run_go_build(_build_command(go, KUBECTL, partial), workdir, status)
            if code != 0:
                tail = "\n".join(status.tail)
                raise BuildError(f"go build of kubectl failed (exit {code}):\n{tail}")
            partial.chmod(0o755)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    progress(f"built kubectl in {format_duration(status.elapsed)}: {target}")


def ensure_kubectl(progress: Callable[[str], None]) -> Path:
    """The cached kubectl binary, built from ``bench/_go/kubectl`` if missing."""
    _check_pin()
    target = binary_path(KUBECTL.name, KUBECTL.version)
    if target.is_file() and os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / ".lock", progress):
        if not (target.is_file() and os.access(target, os.X_OK)):
            _build(target, progress)
    return target
