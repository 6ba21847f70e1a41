"""Command line: ``python -m lockheed.testing {build,up}``.

``build``
    Build (or find in the cache) etcd and kube-apiserver; print their paths
    and how long it took.
``up``
    Run a local control plane in the foreground, print how to reach it, and
    stop it cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from ._build import BuildError, ensure_binaries, format_duration
from ._cluster import ClusterError
from ._controlplane import ControlPlane

_LIVENESS_INTERVAL = 1.0
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


class _StopRequested(Exception):
    """SIGINT or SIGTERM arrived."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _build(_args: argparse.Namespace) -> int:
    began = time.monotonic()
    binaries = ensure_binaries(progress=_say)
    print(f"etcd:           {binaries.etcd}")
    print(f"kube-apiserver: {binaries.kube_apiserver}")
    print(f"time:           {format_duration(time.monotonic() - began)}")
    return 0


def _request_stop(_signum: int, _frame: FrameType | None) -> None:
    raise _StopRequested


def _print_access(control_plane: ControlPlane, kubeconfig: Path) -> None:
    print(f"export KUBECONFIG={kubeconfig}")
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
        print(f"export NO_PROXY={no_proxy}")
    started = format_duration(control_plane.start_seconds or 0.0)
    print(f"# API server {control_plane.server} (started in {started})", flush=True)
    _say("Press Ctrl-C to stop.")


def _serve(control_plane: ControlPlane, copy_to: Path | None) -> int:
    kubeconfig = control_plane.kubeconfig
    if copy_to is not None:
        shutil.copyfile(kubeconfig, copy_to)
        kubeconfig = copy_to
    try:
        _print_access(control_plane, kubeconfig)
        idle = threading.Event()  # never set: waits are interrupted by signals
        while control_plane.running():
            idle.wait(_LIVENESS_INTERVAL)
        _say(f"The control plane exited unexpectedly:\n{control_plane.log_tail()}")
        return 1
    finally:
        if copy_to is not None:
            copy_to.unlink(missing_ok=True)


def _up(args: argparse.Namespace) -> int:
    # SIGINT too: a shell starts background jobs with SIGINT ignored.
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, _request_stop) for signum in signals}
    try:
        with ControlPlane(start_timeout=args.timeout, progress=_say) as control_plane:
            return _serve(control_plane, args.kubeconfig)
    except _StopRequested:
        _say("Stopped.")
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lockheed.testing",
        description="Local Kubernetes control plane (etcd + kube-apiserver) for lockheed tests.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build = commands.add_parser(
        "build", help="build or locate etcd and kube-apiserver and print their paths"
    )
    build.set_defaults(run=_build)
    up = commands.add_parser("up", help="run a control plane in the foreground until Ctrl-C")
    up.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for readiness (default 60)"
    )
    up.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="PATH",
        help="also write the admin kubeconfig to PATH (removed on exit)",
    )
    up.set_defaults(run=_up)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except (BuildError, ClusterError) as error:
        _say(f"error: {error}")
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
