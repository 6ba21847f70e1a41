"""``lockheed break NAME``: remove the leases of a stuck lock.

The lock object is read once; its leases are listed with what is known of
them, and (unless ``--yes``) a confirmation is read from standard input. The
write that removes the leases is conditional on the resourceVersion read, so
a change made meanwhile (a renewal, a release, another holder) is never
overwritten. Waiters in line stay in line: the first of them takes the lock
from its watch. A holder whose lease is removed learns of it at its next
renewal (``LockLost``; ``lockheed run`` stops its command). Tags, the line of
waiters and every other annotation are kept, but for Go lockheed's
reservation (``reserved/by``, ``reserved/expires``), which the same write
clears.

Why clearing a reservation is safe: Go lockheed reserves the ConfigMap with
one update and writes its new state, dropping the reservation, with a second
update of the object the first one returned, so that second update is
conditional on the resourceVersion the reservation made. Breaking the lock
writes a new version, so a Go write still to come after its reservation
fails with a conflict whether or not the reservation is cleared: the
reservation protects nothing from this write. Leaving it would only make
every contender (Go and Python) wait until it runs out, up to 30 s after a
Go process that died between its two updates. A Go instance that reserves
afterwards starts from the broken state like any other contender, and its
writes stay conditional. A free lock is left as it is, reserved or not (a
live reservation there is a Go acquire under way). Leases carry no
reservations. A Go holder whose live lease was broken reserves the ConfigMap
again at its next renewal (Go's Renew reserves before it finds its lease
gone, and leaves the reservation), for as long as that process runs.

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
from ._core import CONFLICT, RESERVED_BY, RESERVED_EXPIRES, Read, Replace
from ._queue import read_queue
from ._runcmd import say
from ._state import NEVER, Lease, Record, StateFormatError, parse_time

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
        epilog="Go lockheed's reservation (reserved/*) is cleared with the leases. Exit "
        "statuses: 0 done (or already free); 1 no such lock, a malformed lock, or an error "
        "(one line on standard error); 2 bad usage; 3 refused (a live lease without "
        "--force, or not confirmed); 4 the lock changed meanwhile (nothing written).",
    )
    add_connection(brk)
    add_backend(brk)
    brk.add_argument("name", metavar="NAME", help="lock name")
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


def _reservation(record: Record, now: Any) -> str:
    """Go lockheed's reservation of the object, described ("" when there is none)."""
    by = record.meta.get(RESERVED_BY)
    if by is None and RESERVED_EXPIRES not in record.meta:
        return ""
    try:
        left = (parse_time(record.meta.get(RESERVED_EXPIRES, "")) - now).total_seconds()
        until = f"expires in {human_seconds(left)}" if left > 0 else "expired"
    except StateFormatError:
        until = "unreadable expiry"
    return f" and Go lockheed's reservation by {by or '?'} ({until})"


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
        held = ", ".join(_describe(le, now) for le in leases)
        described = held + _reservation(record, now)
        if live and not args.force:
            say(
                f"lock {name!r} is held by {held}; not broken: use --force to remove "
                "a live lease (its holder loses the lock)"
            )
            return EXIT_REFUSED
        if not args.yes and not _confirm(
            f"Break lock {name!r} in {where}: remove the lease of {described}?"
        ):
            say("not confirmed; nothing was written")
            return EXIT_REFUSED
        cleared = {k: None for k in (RESERVED_BY, RESERVED_EXPIRES) if k in record.meta}
        written = locker.execute(
            Replace(name, record.version, state.with_leases(()), cleared, record)
        )
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
