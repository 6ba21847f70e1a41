"""``lockheed break NAME``: remove the leases of a stuck lock.

The lock object is read once; its leases are listed with what is known of
them, and (unless ``--yes``) a confirmation is read from standard input. The
write that removes the leases is conditional on the resourceVersion read, so
a change made meanwhile (a renewal, a release, another holder) is never
overwritten. Waiters in line stay in line: the first of them takes the lock
from its watch. A holder whose lease is removed learns of it at its next
renewal (``LockLost``; ``lockheed run`` stops its command). Tags, the line of
waiters and every other annotation are kept.

Failure semantics and exit statuses:

* 0: the leases were removed (said on standard output), or the lock was free
  already (nothing written);
* 1: no such lock, a malformed lock object (never overwritten: inspect it with
  ``lockheed show NAME -o yaml``), or an API or configuration error;
* 2: bad usage;
* 3: refused: a lease is live and ``--force`` was not given, or the
  confirmation was not given (anything but ``y``/``yes``, or end of input);
  nothing was written;
* 4: the lock changed (or was deleted) after it was read; nothing was written.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._cli_common import add_backend, add_connection, human_seconds, make_locker
from ._core import CONFLICT, Read, Replace
from ._queue import read_queue
from ._runcmd import say
from ._state import NEVER, Lease

__all__ = ["EXIT_CHANGED", "EXIT_REFUSED", "add_break_parser"]

EXIT_ERROR = 1
EXIT_REFUSED = 3
EXIT_CHANGED = 4


def add_break_parser(sub: Any) -> None:
    brk = sub.add_parser(
        "break",
        help="remove the leases of a stuck lock",
        description="Remove the leases of lock NAME, so that the next waiter or acquire "
        "takes it. A live lease is refused unless --force. The write is conditional on "
        "the version read: a change made meanwhile is never overwritten.",
        epilog="Exit statuses: 0 done (or already free), 1 error or no such lock, 2 bad "
        "usage, 3 refused (live lease without --force, or not confirmed), 4 the lock "
        "changed meanwhile (nothing written).",
    )
    add_connection(brk)
    add_backend(brk)
    brk.add_argument("name", help="lock name")
    brk.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    brk.add_argument(
        "--force",
        action="store_true",
        help="also remove live (unexpired) leases: their holders lose the lock",
    )
    brk.set_defaults(func=_break)


def _describe(lease: Lease, now: Any) -> str:
    if lease.expires >= NEVER:
        return f"{lease.instance_id} (live, never expires)"
    left = (lease.expires - now).total_seconds()
    if left > 0:
        return f"{lease.instance_id} (live, expires in {human_seconds(left)})"
    return f"{lease.instance_id} (expired {human_seconds(-left)} ago)"


def _confirm(question: str) -> bool:
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    if not answer:
        print(file=sys.stderr)
    return answer.strip().lower() in ("y", "yes")


def _break(args: argparse.Namespace) -> int:
    name = args.name
    with make_locker(args) as locker:
        where = f"namespace {locker.namespace!r}"
        record = locker.execute(Read(name))
        if record is None:
            say(f"no lock {name!r} in {where}")
            return EXIT_ERROR
        state = record.state
        if state is None:
            say(
                f"lock {name!r} in {where} is malformed ({record.error}); lockheed never "
                f"overwrites it: see 'lockheed show {name} -o yaml'"
            )
            return EXIT_ERROR
        now, _ = locker.clock.bounds()
        leases = list(state.leases.values())
        if not leases:
            print(f"Lock {name!r} in {where} is free: nothing to break.")
            return 0
        live = [le for le in leases if le.live(now)]
        described = ", ".join(_describe(le, now) for le in leases)
        if live and not args.force:
            say(
                f"lock {name!r} is held by {described}; not broken: use --force to remove "
                "a live lease (its holder loses the lock)"
            )
            return EXIT_REFUSED
        if not args.yes and not _confirm(
            f"Break lock {name!r} in {where}: remove the lease of {described}?"
        ):
            say("not confirmed; nothing was written")
            return EXIT_REFUSED
        written = locker.execute(Replace(name, record.version, state.with_leases(()), {}, record))
    if written is None or written is CONFLICT:
        what = "was deleted" if written is None else "changed"
        say(
            f"lock {name!r} {what} after it was read (resourceVersion {record.version}); "
            f"nothing was written: look again with 'lockheed show {name}'"
        )
        return EXIT_CHANGED
    line = read_queue(written.meta)
    after = (
        f" {line[0].instance_id}, first of {len(line)} in line, takes it."
        if line
        else " The next acquire takes it."
    )
    print(f"Broke lock {name!r} in {where}: removed the lease of {described}.{after}")
    return 0
