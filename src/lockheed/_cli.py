"""The ``lockheed`` command line (also ``kubectl lockheed``, as a kubectl plugin).

Every command takes kubectl's connection options (``--kubeconfig``,
``--context``, ``-n/--namespace``) and ``--backend configmap|lease``: locks
kept in ConfigMaps (Go lockheed's format, the default) or in Leases
(client-go's). The commands are registered in :data:`COMMANDS`, in the order
``lockheed --help`` lists them.

``lockheed run NAME -- COMMAND...``
    Hold lock NAME while COMMAND runs (renewed in the background), then release
    it, on every way out (see :mod:`lockheed._runcmd` for signals and loss).
    ``--no-wait`` gives up at once when the lock is held, ``--verbose`` reports
    the holders it waits for, ``--force-if EXPR`` takes the lock over when the
    condition (``--where``'s Go vocabulary) holds for it. Exit status:

    * COMMAND's own status; 128+N when it was killed by signal N;
    * 2: bad usage (options, lock name);
    * 73: the lock was not had (held, with ``--no-wait``; or not within ``--timeout``);
    * 75: the lock was lost while COMMAND ran (COMMAND got SIGTERM);
    * 126: COMMAND cannot be run (not executable); 127: not found;
    * 128+N: lockheed got signal N (SIGTERM, SIGINT, SIGHUP) while waiting
      for the lock; COMMAND never started;
    * 1: any other error (the Kubernetes configuration, the API server, a
      failed release), reported on one line.

    ``--shared`` / ``--exclusive`` hold a shared (readers-writer) lock as one
    of its shared holders or as its exclusive holder; ``--limit N`` holds one
    of at most N places of a semaphore. A lock of another kind, or a semaphore
    of another limit, is an error (exit 1), and nothing is changed.
``lockheed elect NAME -- COMMAND...``
    Run COMMAND only while leading (:mod:`lockheed._elect_cmd`).
``lockheed list`` and ``lockheed show NAME``
    Look at locks (:mod:`lockheed._cli_list`); exit 0, 1 on errors (``show``:
    no such lock), 2 for a bad ``--where`` or ``-l``.
``lockheed break NAME``
    Remove the leases of a stuck lock (:mod:`lockheed._cli_break`); exit 0, 1,
    2, 3 refused or not confirmed, 4 changed meanwhile.
``lockheed watch``, ``lockheed demo``
    The live view of locks changing hands (:mod:`lockheed._watch_cmd`), and
    workers taking turns on one lock shown in it (:mod:`lockheed._demo_cmd`).
``lockheed completion bash|zsh|fish``
    Print a shell completion script (:mod:`lockheed._cli_complete`).

Every error is one ``lockheed: ...`` line on standard error, never a
traceback; a bad ``--where`` adds the expression and a caret under the bad
token. The library's log (the ``lockheed`` logger) is shown the same way:
a warning (a renewal or a release that failed) is one ``lockheed: ...``
line; a loss is said by the command that held the lock, once.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._cli_break import add_break_parser
from ._cli_common import EXIT_USAGE, add_backend, add_connection, make_locker
from ._cli_complete import add_completion_parser
from ._cli_list import add_list_parser, add_show_parser
from ._cli_where import WhereError, parse_where
from ._demo_cmd import add_demo_parser
from ._elect_cmd import add_elect_parser
from ._errors import LockError
from ._events import EventCode
from ._runcmd import EXIT_ERROR, CommandRun, say
from ._shared_core import check_limit
from ._sync.lock import Lock
from ._sync.semaphore import Semaphore
from ._watch_cmd import add_watch_parser

EXIT_INTERRUPTED = 130


def _run(args: argparse.Namespace) -> int:
    command: list[str] = args.command
    if not command:
        print("lockheed run: give a command after '--'", file=sys.stderr)
        return EXIT_USAGE
    timeout = 0.0 if args.no_wait else args.timeout
    force = None
    if args.force_if is not None:
        try:
            force = parse_where(args.force_if).condition()
        except WhereError as exc:
            print(f"lockheed run: --force-if: {exc}", file=sys.stderr)
            return EXIT_USAGE
    with make_locker(args) as locker:
        lock = (
            Lock(args.name, locker)
            if args.limit is None
            else Semaphore(args.name, locker, args.limit)
        )
        if args.mode is not None:
            lock.with_mode(args.mode)
        lock.with_duration(args.duration).with_tags(args.tag).with_force(force)
        lock.with_renew_interval(args.renew if args.renew is not None else args.duration / 3)
        return CommandRun(lock, command, timeout, verbose=args.verbose).run()


def _seconds(text: str) -> float:
    """An argparse type: a finite, non-negative number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}")
    return value


def _limit(text: str) -> int:
    try:
        return check_limit(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid limit {text!r}: {exc}") from None


def _add_run_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="hold a lock while a command runs",
        description="Hold lock NAME while COMMAND runs, then release it (lockheed run "
        "NAME [options] -- COMMAND [ARG...]). COMMAND gets LOCKHEED_LOCK_NAME, "
        "LOCKHEED_INSTANCE_ID and LOCKHEED_FENCING_TOKEN.",
        epilog="Exit statuses: the command's (128+N if signal N killed it); 1 an error "
        "(one line on standard error); 2 bad usage; 73 the lock was not had (--no-wait, "
        "--timeout); 75 the lock was lost while the command ran; 126/127 the command "
        "cannot be run / is not found; 128+N signal N while waiting.",
    )
    add_connection(run)
    add_backend(run)
    run.add_argument("name", metavar="NAME", help="lock name")
    run.add_argument(
        "--duration", type=_seconds, default=30.0, metavar="SECONDS", help="lease (default 30)"
    )
    run.add_argument(
        "--renew", type=_seconds, metavar="SECONDS", help="renew interval (default duration/3)"
    )
    wait = run.add_mutually_exclusive_group()
    wait.add_argument(
        "--timeout", type=_seconds, metavar="SECONDS", help="give up after this long (exit 73)"
    )
    wait.add_argument(
        "--no-wait",
        action="store_true",
        help="give up at once if the lock is held (exit 73), like flock -n",
    )
    run.add_argument("--tag", action="append", default=[], help="tag the lock (repeatable)")
    run.add_argument(
        "--force-if",
        metavar="EXPR",
        help="take the lock over, even from a live holder, when EXPR holds for it "
        "(Go's vocabulary of --where: tags contains T, acquired, and, or, not acquired)",
    )
    run.add_argument(
        "-v", "--verbose", action="store_true", help="say whom it waits for, and each change"
    )
    kind = run.add_mutually_exclusive_group()
    kind.add_argument(
        "--shared", dest="mode", action="store_const", const="shared", help="a shared holder"
    )
    kind.add_argument(
        "--exclusive",
        dest="mode",
        action="store_const",
        const="exclusive",
        help="the exclusive holder of a shared lock",
    )
    kind.add_argument(
        "--limit", type=_limit, help="a semaphore of at most LIMIT holders (an integer from 1)"
    )
    run.set_defaults(func=_run)


def _add_elect(sub: Any) -> None:
    add_elect_parser(sub, make_locker, add_connection, add_backend)


#: Every subcommand, in the order ``lockheed --help`` lists them: register new ones here.
COMMANDS: tuple[Callable[[Any], None], ...] = (
    _add_run_parser,
    _add_elect,
    add_list_parser,
    add_show_parser,
    add_break_parser,
    add_watch_parser,
    add_demo_parser,
    add_completion_parser,
)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("lockheed")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def parser(prog: str = "lockheed") -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=prog,
        description="Distributed locks kept in Kubernetes.",
        epilog="Exit statuses: 0 success (watch, demo: also ended by Ctrl-C); 1 an error "
        "(one line on standard error); 2 bad usage; run: the command's, 73 the lock was "
        "not had, 75 it was lost; elect: the command's, 75 leadership lost (--once); "
        "break: 3 refused, 4 changed meanwhile. See '%(prog)s COMMAND --help'.",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = top.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return top


class _LogLines(logging.Handler):
    """The ``lockheed`` logger's records as the commands speak: one ``lockheed: ...``
    line each (the event's message), but for a loss, which the command reports."""

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if isinstance(args, tuple) and len(args) == 4 and isinstance(args[0], int):
            if args[0] == EventCode.LOST:
                return
            say(args[3])  # an event: [code] lock NAME (ID): message
            return
        say(record.getMessage())


def main(argv: Sequence[str] | None = None, prog: str = "lockheed") -> int:
    log = logging.getLogger("lockheed")
    shown = _LogLines(logging.WARNING)
    log.addHandler(shown)
    try:
        return _main(argv, prog)
    finally:
        log.removeHandler(shown)


def _main(argv: Sequence[str] | None, prog: str) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in words:  # everything after '--' is the command, never lockheed's options
        cut = words.index("--")
        words, command = words[:cut], words[cut + 1 :]
    args = parser(prog).parse_args(words)
    args.command = command
    try:
        code: int = args.func(args)
    except LockError as exc:
        say(exc)
        return EXIT_ERROR
    except (ValueError, TypeError) as exc:  # bad input found past argparse, e.g. a lock name
        say(exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        say(f"unexpected error: {type(exc).__name__}: {exc}")
        return EXIT_ERROR
    return code
