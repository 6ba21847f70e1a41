"""``lockheed elect NAME -- COMMAND...``: run COMMAND only while leading.

lockheed campaigns for leadership of lock NAME with a
:class:`~lockheed.LeaderElector` and starts COMMAND when it leads, with
``LOCKHEED_FENCING_TOKEN`` and ``LOCKHEED_LEADER`` (this elector's identity)
in its environment.

* Leadership lost: COMMAND gets SIGTERM at once; once it has exited,
  lockheed campaigns again and starts COMMAND anew when it leads again. With
  ``--once`` it exits with status 75 instead.
* COMMAND exits by itself: leadership is released (a waiting elector takes
  over at once) and lockheed exits with COMMAND's status.
* SIGTERM, SIGINT or SIGHUP: forwarded to COMMAND while it runs; lockheed
  then releases leadership once COMMAND has exited and exits with COMMAND's
  status. Received while campaigning, lockheed exits with 128 + the signal's
  number (at the leader's next renewal, and within the renew deadline).

Exit statuses: COMMAND's (128 + N if a signal N killed it); 75 with
``--once`` after a loss; 128 + N when a signal N stopped the campaign; 1 for a
lockheed error (for example RBAC); 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any

from ._errors import LockLost
from ._sync.election import LeaderElector
from ._sync.lock import Lock

__all__ = ["EXIT_LOST", "add_elect_parser"]

EXIT_LOST = 75
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _say(message: str) -> None:
    print(f"lockheed: {message}", file=sys.stderr, flush=True)


def add_elect_parser(
    sub: Any,
    common: Callable[[argparse.ArgumentParser], None],
    locker: Callable[[argparse.Namespace], Any],
) -> None:
    """Register ``elect`` with the subcommands of ``lockheed``."""
    elect = sub.add_parser("elect", help="run a command only while leading")
    common(elect)
    elect.add_argument("name", help="lock name")
    elect.add_argument("--identity", help="this candidate's identity (default: host name-random)")
    elect.add_argument("--lease-duration", type=float, default=15.0, help="seconds (default 15)")
    elect.add_argument("--renew-deadline", type=float, default=10.0, help="seconds (default 10)")
    elect.add_argument("--retry-period", type=float, default=2.0, help="seconds (default 2)")
    elect.add_argument("--tag", action="append", default=[], help="tag the lock (repeatable)")
    elect.add_argument("--once", action="store_true", help="exit 75 when leadership is lost")
    elect.epilog = "The command and its arguments follow '--'."
    elect.set_defaults(func=lambda args: _elect(args, locker))


class _Term:
    """The command of the current term, and the signals lockheed received."""

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.signals: list[int] = []

    def on_signal(self, elector: LeaderElector) -> Callable[[int, Any], None]:
        def handle(signum: int, frame: Any) -> None:
            self.signals.append(signum)
            elector.stop()
            child = self.child
            if child is not None and child.poll() is None:
                child.send_signal(signum)

        return handle

    def run(self, command: list[str], elector: LeaderElector, ended: threading.Event) -> int:
        env = {
            **os.environ,
            "LOCKHEED_FENCING_TOKEN": str(elector.lock.fencing_token),
            "LOCKHEED_LEADER": elector.identity,
        }
        self.child = child = subprocess.Popen(command, env=env)
        stopper = threading.Thread(target=self._stop_on_loss, args=(child, ended), daemon=True)
        stopper.start()
        try:
            status = child.wait()
        finally:
            self.child = None
        return 128 - status if status < 0 else status

    def _stop_on_loss(self, child: subprocess.Popen[bytes], ended: threading.Event) -> None:
        ended.wait()
        if not self.signals and child.poll() is None:  # lost, not stopped by a signal
            _say("leadership lost; stopping the command")
            child.send_signal(signal.SIGTERM)


def _elect(args: argparse.Namespace, make_locker: Callable[[argparse.Namespace], Any]) -> int:
    command: list[str] = args.command
    if not command:
        print("lockheed elect: give a command after '--'", file=sys.stderr)
        return 2
    identity = args.identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    with make_locker(args) as locker:
        lock = Lock(args.name, locker, instance_id=identity).with_tags(args.tag)
        elector = LeaderElector(
            lock,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
            on_new_leader=lambda who: _say(f"leader is {who}"),
            on_started_leading=lambda: _say(
                f"leading {args.name!r} as {identity} (fencing token {lock.fencing_token})"
            ),
            on_stopped_leading=lambda: _say("no longer leading"),
        )
        term = _Term()
        previous = {s: signal.signal(s, term.on_signal(elector)) for s in FORWARDED}
        try:
            status = elector.run(lambda ended: term.run(command, elector, ended), once=args.once)
        except LockLost as exc:
            _say(f"leadership lost: {exc}")
            return EXIT_LOST
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    if status is None:
        return 128 + term.signals[0] if term.signals else 0
    return status
