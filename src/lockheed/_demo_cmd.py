"""``lockheed demo``: workers take turns on one lock, shown live.

It starts a local control plane (unless ``--kubeconfig`` or ``--context`` is
given: then it uses that cluster, as the other commands do), showing
the build's progress on a first run and its start-up steps, then starts
``--workers`` processes (alice, bob, carol, ...) that take turns on lock
``demo`` for ``--rounds`` rounds each, waiting in line while another holds
it. The live view of ``lockheed watch`` shows the holder, the fencing token,
the lease's countdown and the waiters; one worker (unless ``--no-crash``)
exits while holding the lock, as a crash would, so the view shows its lease
running out and the next in line taking over. At the end it says whether
the fencing token increased at every change of holder.

Failure semantics: Ctrl-C (or SIGTERM) ends it cleanly: the workers are
stopped (each releases what it holds), then the control plane it started is
stopped. A worker that fails has its error printed, and the demo exits 1.
The workers run as ``python -m lockheed._demo_cmd`` (no subcommand of
``lockheed``), given the demo's ``--kubeconfig``, ``--context``, namespace,
``--prefix`` and ``--backend``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
from types import FrameType
from typing import IO, Any

from ._cli_common import add_backend, add_connection, make_async_locker, make_locker
from ._errors import LockError
from ._live import Change
from ._runcmd import say
from ._sync.lock import Lock
from ._watch_cmd import Follow, Output, Source, live_output

__all__ = ["add_demo_parser"]

LOCK = "demo"
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
DURATION = 6.0
RENEW = 2.0
_STOP_GRACE = 15.0


def _progress(message: str) -> None:
    print(f"[lockheed] {message}", file=sys.stderr, flush=True)


class _Workers:
    """The worker processes and their error logs."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.logs: list[IO[bytes]] = []
        self.names = list(NAMES[: args.workers])
        self.processes: list[subprocess.Popen[bytes]] = []
        base = [sys.executable, "-m", "lockheed._demo_cmd", "--namespace", args.namespace]
        if args.kubeconfig is not None:
            base += ["--kubeconfig", str(args.kubeconfig)]
        if args.context is not None:
            base += ["--context", args.context]
        base += ["--prefix", args.prefix, "--backend", args.backend]
        base += ["--rounds", str(args.rounds), "--hold", str(args.hold)]
        crasher = self.names[-1] if args.crash else None
        for name in self.names:
            log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
            self.logs.append(log)
            extra = ["--crash"] if name == crasher else []
            self.processes.append(
                subprocess.Popen(
                    [*base, "--worker", name, *extra],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )

    def wait(self) -> list[int]:
        return [p.wait() for p in self.processes]

    def stop(self) -> None:
        """SIGTERM to those still running (each releases), SIGKILL after a grace."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(_STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def errors(self) -> list[str]:
        out = []
        for name, process, log in zip(self.names, self.processes, self.logs, strict=True):
            if process.returncode not in (0, None):
                log.seek(0)
                text = log.read().decode(errors="replace").strip()
                out.append(f"{name} failed (exit {process.returncode}): {text}")
        return out

    def close(self) -> None:
        for log in self.logs:
            log.close()


def _summary(history: list[Change], names: list[str]) -> str:
    tokens = [c.token for c in history if c.token is not None]
    handoffs = sum(c.kind == "HANDED-OFF" for c in history)
    expired = sum(c.kind == "EXPIRED" for c in history)
    rising = all(a < b for a, b in itertools.pairwise(tokens))
    order = " < ".join(str(t) for t in tokens) if rising else ", ".join(map(str, tokens))
    verdict = "increased at every change of holder" if rising else "did NOT always increase"
    return (
        f"Demo finished: {len(names)} workers, {len(tokens)} turns, {handoffs} hand-offs, "
        f"{expired} expired lease(s). Fencing tokens {verdict}: {order}"
    )


async def _show(args: argparse.Namespace) -> int:
    async with make_async_locker(args) as locker:
        source = Source(locker, name=LOCK)
        title = f"lockheed demo: {args.workers} workers take turns on lock {LOCK!r}"
        output: Output = live_output(source, sys.stdout, events=args.events, title=title)
        follow = asyncio.get_running_loop().create_task(Follow(source, output).run())
        workers = _Workers(args)
        try:
            done = asyncio.get_running_loop().run_in_executor(None, workers.wait)
            either: list[asyncio.Future[Any]] = [follow, done]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if follow.done():
                follow.result()  # the view failed: raise its error
            await done
            # A worker that crashed holding the lock: show its lease running out.
            settled = asyncio.ensure_future(output.settled())
            try:
                await asyncio.wait([follow, settled], return_when=asyncio.FIRST_COMPLETED)
            finally:
                settled.cancel()
            if follow.done():
                follow.result()
        finally:
            follow.cancel()
            await asyncio.gather(follow, return_exceptions=True)
            output.close()
            await asyncio.get_running_loop().run_in_executor(None, workers.stop)
            errors = workers.errors()
            workers.close()
        for error in errors:
            say(error)
        print(_summary(output.history, workers.names), flush=True)
        return 1 if errors else 0


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _demo(args: argparse.Namespace) -> int:
    if args.workers < 2 or args.workers > len(NAMES):
        raise ValueError(f"--workers must be from 2 to {len(NAMES)}, not {args.workers}")
    if args.rounds < 1:
        raise ValueError(f"--rounds must be at least 1, not {args.rounds}")
    if not 0 <= args.hold <= 60:  # NaN fails too
        raise ValueError(f"--hold must be from 0 to 60 seconds, not {args.hold}")
    local = args.kubeconfig is None and args.context is None
    if args.namespace is not None and local:
        raise ValueError(
            "--namespace needs --kubeconfig or --context (a local control plane gets a new one)"
        )
    previous = signal.signal(signal.SIGTERM, _interrupt)
    plane: Any = None
    try:
        if local:
            from .testing import ControlPlane

            _progress("starting a local control plane (etcd + kube-apiserver)")
            plane = ControlPlane(progress=_progress).start()
            args.kubeconfig = plane.kubeconfig
            args.namespace = plane.create_namespace("lockheed-demo")
            _progress(f"namespace {args.namespace}")
        if args.namespace is None:  # the context's: the workers are told it
            with make_locker(args) as locker:
                args.namespace = locker.namespace
        try:
            return asyncio.run(_show(args))
        except KeyboardInterrupt:
            print("\nStopped: the workers released the lock.", flush=True)
            return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if plane is not None:
            _progress("stopping the control plane")
            plane.stop()


def add_demo_parser(sub: Any) -> None:
    """Register ``demo`` with the subcommands of ``lockheed``."""
    demo = sub.add_parser(
        "demo",
        help="workers take turns on a lock, shown live",
        description="Start a local control plane (unless --kubeconfig or --context is "
        "given: then that cluster is used) and let workers take turns on lock 'demo', "
        "shown live. Ctrl-C ends it cleanly.",
        epilog="Exit statuses: 0 done, or stopped by Ctrl-C (the workers released the "
        "lock); 1 a worker or the view failed (its error on standard error); 2 bad usage.",
    )
    add_connection(demo)
    add_backend(demo)
    demo.add_argument("--workers", type=int, default=3, metavar="N", help="2 to 8 (default 3)")
    demo.add_argument(
        "--rounds", type=int, default=3, metavar="N", help="turns per worker (default 3)"
    )
    demo.add_argument(
        "--hold", type=float, default=1.5, metavar="SECONDS", help="a turn's length (default 1.5)"
    )
    demo.add_argument(
        "--no-crash",
        dest="crash",
        action="store_false",
        help="no worker exits while holding the lock",
    )
    demo.add_argument(
        "--events", action="store_true", help="one line per change, even on a terminal"
    )
    demo.set_defaults(func=_demo)


# -- the workers -------------------------------------------------------------


def _worker(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def interrupted(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, interrupted)
    with make_locker(args) as locker:
        lock = Lock(LOCK, locker, instance_id=args.worker).with_duration(DURATION)
        lock.with_renew_interval(RENEW).with_tags(["demo"])
        for turn in range(args.rounds):
            lock.with_stop(stop)  # a signal while waiting ends the wait, leaving nothing
            try:
                lock.acquire(timeout=120)
            except LockError:
                if stop.is_set():
                    return 0
                raise
            finally:
                lock.with_stop(None)  # a stop would refuse the release too
            if args.crash and turn == min(1, args.rounds - 1):
                os._exit(0)  # a crash while holding: no release, no renewal
            stop.wait(args.hold)  # the protected work (cut short by a signal)
            lock.release()
            if stop.wait(args.hold / 2):  # work outside the lock; others take their turn
                return 0
    return 0


def _worker_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lockheed._demo_cmd")
    add_connection(parser)
    add_backend(parser)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hold", type=float, default=1.5)
    parser.add_argument("--crash", action="store_true")
    return _worker(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(_worker_main())
