"""``lockheed elect NAME -- COMMAND...``: run COMMAND only while leading.

lockheed campaigns for leadership of lock NAME with a
:class:`~lockheed.LeaderElector` and starts COMMAND when it leads, with
``LOCKHEED_FENCING_TOKEN`` and ``LOCKHEED_LEADER`` (this elector's identity)
in its environment. ``--backend configmap|lease`` chooses the locker, as for
``run``. Signals are handled as ``lockheed run`` handles them
(:mod:`lockheed._runcmd`).

* Leadership lost: COMMAND gets SIGTERM at once; once it has exited,
  lockheed campaigns again and starts COMMAND anew when it leads again. With
  ``--once`` it exits with status 75 instead.
* COMMAND exits by itself: leadership is released (a waiting elector takes
  over at once) and lockheed exits with COMMAND's status.
* SIGTERM, SIGINT or SIGHUP while COMMAND runs: passed on to COMMAND (a
  second one kills it); lockheed releases leadership once COMMAND has exited
  and exits with COMMAND's status. Received while campaigning, the campaign
  stops (within about a second), COMMAND never starts, and lockheed exits with
  128 + the signal's number. Ignored signals stay ignored.

Exit statuses: COMMAND's (128 + N if a signal N killed it); 75 with
``--once`` after a loss; 126/127 when COMMAND cannot be run / is not found
(leadership released); 128 + N when a signal N stopped the campaign; 1 for a
lockheed error (for example RBAC); 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import FrameType
from typing import Any

from ._errors import LockLost
from ._runcmd import (
    EXIT_LOST,
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    exit_status,
    say,
    signals_caught,
)
from ._sync.election import LeaderElector
from ._sync.lock import Lock

__all__ = ["add_elect_parser"]


def add_elect_parser(
    sub: Any,
    locker: Callable[[argparse.Namespace], Any],
    *options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register ``elect`` with the subcommands of ``lockheed``: ``locker(args)``
    makes the locker; ``options`` add the options every command shares."""
    elect = sub.add_parser(
        "elect",
        help="run a command only while leading",
        description="Campaign for leadership of lock NAME and run COMMAND only while "
        "leading (lockheed elect NAME [options] -- COMMAND [ARG...]); COMMAND gets "
        "LOCKHEED_FENCING_TOKEN and LOCKHEED_LEADER. When leadership is lost, COMMAND "
        "gets SIGTERM and lockheed campaigns again.",
        epilog="Exit statuses: the command's (128+N if signal N killed it); 1 an error "
        "(one line on standard error); 2 bad usage; 75 leadership was lost (--once); "
        "126/127 the command cannot be run / is not found; 128+N signal N before leading.",
    )
    for add in options:
        add(elect)
    elect.add_argument("name", metavar="NAME", help="lock name")
    elect.add_argument(
        "--identity", metavar="ID", help="this candidate's identity (default: host name-random)"
    )
    elect.add_argument(
        "--lease-duration", type=float, default=15.0, metavar="SECONDS", help="default 15"
    )
    elect.add_argument(
        "--renew-deadline", type=float, default=10.0, metavar="SECONDS", help="default 10"
    )
    elect.add_argument(
        "--retry-period", type=float, default=2.0, metavar="SECONDS", help="default 2"
    )
    elect.add_argument("--tag", action="append", default=[], help="tag the lock (repeatable)")
    elect.add_argument("--once", action="store_true", help="exit 75 when leadership is lost")
    elect.set_defaults(func=lambda args: _elect(args, locker))


class _Campaign:
    """The command of the current term, and the signals lockheed received."""

    def __init__(self, elector: LeaderElector, command: list[str]):
        self.elector = elector
        self.command = command
        self.child: subprocess.Popen[bytes] | None = None
        self.signals: list[int] = []

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only flags, a queue put and kill(2): safe wherever the main thread was.
        self.signals.append(signum)
        self.elector.stop()
        child = self.child
        if child is not None and child.poll() is None:
            if len(self.signals) == 1:
                child.send_signal(signum)
            else:
                child.kill()

    def signals_caught(self) -> AbstractContextManager[None]:
        """Catch the forwarded signals (in the main thread; ignored ones stay ignored)."""
        return signals_caught(self._on_signal)

    def term(self, ended: threading.Event) -> int | None:
        """The leader's work: run the command until it exits; SIGTERM it on loss."""
        if ended.is_set():  # stopped as leadership came: never start
            return None
        env = {
            **os.environ,
            "LOCKHEED_FENCING_TOKEN": str(self.elector.lock.fencing_token),
            "LOCKHEED_LEADER": self.elector.identity,
        }
        try:
            self.child = child = subprocess.Popen(self.command, env=env)
        except FileNotFoundError as exc:
            say(f"{self.command[0]}: command not found ({exc.strerror})")
            return EXIT_NOT_FOUND
        except OSError as exc:
            say(f"{self.command[0]}: cannot run it ({exc.strerror})")
            return EXIT_NOT_EXECUTABLE
        stopper = threading.Thread(target=self._stop_on_loss, args=(child, ended), daemon=True)
        stopper.start()
        try:
            return exit_status(child.wait())
        finally:
            self.child = None

    def _stop_on_loss(self, child: subprocess.Popen[bytes], ended: threading.Event) -> None:
        ended.wait()
        if not self.signals and child.poll() is None:  # lost, not stopped by a signal
            say("leadership lost; stopping the command (SIGTERM)")
            child.terminate()


def _elect(args: argparse.Namespace, make_locker: Callable[[argparse.Namespace], Any]) -> int:
    command: list[str] = args.command
    if not command:
        say("give a command after '--'")
        return 2
    identity = args.identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    with make_locker(args) as locker:
        lock = Lock(args.name, locker, instance_id=identity).with_tags(args.tag)
        elector = LeaderElector(
            lock,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
            on_new_leader=lambda who: say(f"leader is {who}"),
            on_started_leading=lambda: say(
                f"leading {args.name!r} as {identity} (fencing token {lock.fencing_token})"
            ),
            on_stopped_leading=lambda: say("no longer leading"),
        )
        campaign = _Campaign(elector, command)
        with campaign.signals_caught():
            try:
                status = elector.run(campaign.term, once=args.once)
            except LockLost as exc:
                say(f"leadership lost: {exc}")
                return EXIT_LOST
    if status is None:
        return 128 + campaign.signals[0] if campaign.signals else 0
    return status
