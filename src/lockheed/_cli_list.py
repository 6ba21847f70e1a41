"""``lockheed list`` and ``lockheed show NAME``: looking at locks.

``list`` reads the namespace's lock objects in one paginated LIST (``-A``:
across every namespace) and prints a table, ``wide`` table, ``json``,
``yaml`` or lock names (``-o name``); ``--where``, ``-l``, ``--tag``,
``--held`` and ``--free`` select locks, all of them at once. ``show`` reads
one lock object (one GET) and describes it; ``-o json|yaml`` adds its raw
state: the Go document (``state``: as stored in a ConfigMap, as read from a
Lease), lockheed's annotations and the object itself (``raw``, without
``managedFields``).
Times are judged on the API server's clock.

Failure semantics: nothing is written. A bad ``--where`` or ``-l`` exits 2
with the expression and a caret under the bad token; a lock that ``show``
cannot find exits 1 with one line; API and configuration errors exit 1 with
one line. A malformed lock object is always listed, whatever the selection
(no condition can tell what it holds), and its error goes to standard error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._cli_common import (
    EXIT_USAGE,
    LockRow,
    add_backend,
    add_connection,
    add_output,
    dump,
    human_seconds,
    make_locker,
    print_table,
    rows_of,
)
from ._cli_where import Facts, Where, WhereError, all_where, parse_selector, parse_where
from ._core import Read
from ._runcmd import say
from ._state import format_time

__all__ = [
    "WHERE_EPILOG",
    "SelectionError",
    "add_list_parser",
    "add_selection",
    "add_show_parser",
    "selection",
]

EXIT_NOT_FOUND = 1

#: The ``--where`` language in brief, for the epilog of the commands that take it.
WHERE_EPILOG = (
    "--where examples: 'tags contains nightly and acquired', "
    "'not acquired or expires < 30s', 'waiters > 0', 'holder = worker-1'. "
    "Tests: acquired (held), free, tags contains T, expires CMP DURATION, "
    "waiters CMP N, holder = ID, name = N; combine with and, or, not, ( )."
)


def add_selection(parser: argparse.ArgumentParser) -> None:
    """``--where``, ``-l/--selector`` and ``--tag``: which locks (all must hold)."""
    parser.add_argument("--where", metavar="EXPR", help="only locks for which EXPR holds (below)")
    parser.add_argument(
        "-l",
        "--selector",
        metavar="TAGS",
        help="only locks with these tags: 'a,b' (both), 'a,!b' (a, not b)",
    )
    parser.add_argument(
        "--tag", action="append", default=[], help="only locks with this tag (repeatable)"
    )


def add_list_parser(sub: Any) -> None:
    ls = sub.add_parser(
        "list",
        help="list locks",
        description="List the locks of a namespace (or of every namespace, -A).",
        epilog=f"{WHERE_EPILOG} Exit statuses: 0 listed (also when none match); 1 an error "
        "(one line on standard error); 2 bad usage (options, --where, -l).",
    )
    add_connection(ls, all_namespaces=True)
    add_backend(ls)
    add_output(ls, ("table", "wide", "json", "yaml", "name"))
    add_selection(ls)
    group = ls.add_mutually_exclusive_group()
    group.add_argument(
        "--held", dest="held", action="store_const", const=True, default=None, help="only held"
    )
    group.add_argument("--free", dest="held", action="store_const", const=False, help="only free")
    ls.add_argument("--json", action="store_true", help="same as -o json")
    ls.set_defaults(func=_list)


def add_show_parser(sub: Any) -> None:
    show = sub.add_parser(
        "show",
        help="describe one lock",
        description="Describe one lock: holders, lease countdown, fencing token, tags, waiters.",
        epilog="Exit statuses: 0 shown; 1 no such lock, or an error (one line on standard "
        "error); 2 bad usage.",
    )
    add_connection(show)
    add_backend(show)
    add_output(show, ("text", "json", "yaml"))
    show.add_argument("name", metavar="NAME", help="lock name")
    show.set_defaults(func=_show)


def selection(args: argparse.Namespace) -> Where | None:
    """The locks chosen by ``--where``, ``-l``, ``--tag`` (and ``list``'s ``--held``/
    ``--free``): all of them; None: every lock. Raises :class:`SelectionError`."""
    parts: list[Where] = []
    try:
        if args.where is not None:
            parts.append(parse_where(args.where))
        if args.selector is not None:
            parts.append(parse_selector(args.selector))
    except WhereError as exc:
        option = "--where" if args.where is not None and exc.text == args.where else "-l"
        raise SelectionError(f"{option}: {exc}") from None
    for tag in args.tag:
        parts.append(Where("tags", value=tag))
    wanted = getattr(args, "held", None)
    if wanted is not None:
        held = Where("acquired")
        parts.append(held if wanted else Where("not", (held,)))
    return all_where(parts)


class SelectionError(Exception):
    """A ``--where`` or ``-l`` that cannot be read (bad usage: exit 2)."""


def facts(row: LockRow) -> Facts:
    return Facts(
        row.name,
        frozenset(row.tags),
        tuple(h.instance_id for h in row.holders),
        row.expires_in,
        len(row.waiters),
    )


def _list(args: argparse.Namespace) -> int:
    try:
        where = selection(args)
    except SelectionError as exc:
        print(f"lockheed list: {exc}", file=sys.stderr)
        return EXIT_USAGE
    output = "json" if args.json else args.output
    with make_locker(args) as locker:
        records = _all_namespaces(locker) if args.all_namespaces else locker.list_records()
        now, _ = locker.clock.bounds()
        namespace = locker.namespace
    everything = rows_of(records, now, namespace)
    rows = [
        r for r in everything if r.error is not None or where is None or where.matches(facts(r))
    ]
    for row in rows:
        if row.error is not None:
            say(f"lock {row.name!r} in namespace {row.namespace!r} is malformed: {row.error}")
    if output in ("json", "yaml"):
        dump([r.to_dict() for r in rows], output)
        return 0
    if output == "name":
        for r in rows:
            print(r.name)
        return 0
    if not rows:
        where_text = "any namespace" if args.all_namespaces else f"namespace {namespace}"
        if everything:
            print(f"No locks in {where_text} match ({len(everything)} in all).", file=sys.stderr)
        else:
            print(f"No locks in {where_text}.", file=sys.stderr)
        return 0
    header = ["NAME", "TYPE", "HOLDERS", "EXPIRES IN", "TOKEN", "TAGS", "AGE"]
    if output == "wide":
        header += ["WAITERS", "OBJECT", "VERSION"]
    if args.all_namespaces:
        header.insert(0, "NAMESPACE")
    table = []
    for r in rows:
        cells = _cells(r)
        if output == "wide":
            cells += [str(len(r.waiters)), r.object_name, r.version]
        if args.all_namespaces:
            cells.insert(0, r.namespace)
        table.append(cells)
    print_table(header, table)
    return 0


def _age(row: LockRow) -> str:
    if row.created is None:
        return "-"
    return human_seconds(max(0.0, (row.now - row.created).total_seconds()))


def _cells(r: LockRow) -> list[str]:
    if r.error is not None:
        return [r.name, "MALFORMED", "?", "?", "?", "?", _age(r)]
    holders = ",".join(h.instance_id for h in r.holders) or "<none>"
    token = "-" if r.fencing_token is None else str(r.fencing_token)
    tags = ",".join(r.tags) or "<none>"
    return [r.name, r.kind, holders, human_seconds(r.expires_in), token, tags, _age(r)]


def _all_namespaces(locker: Any) -> list[Any]:
    """The locker's LIST, made across the cluster instead of its namespace."""
    api = locker.api
    saved = api.base
    root, _, _ = saved.partition("/namespaces/")
    api.base = f"{root}/{api.resource}"
    try:
        records: list[Any] = locker.list_records()
        return records
    finally:
        api.base = saved


def _show(args: argparse.Namespace) -> int:
    with make_locker(args) as locker:
        record = locker.execute(Read(args.name))
        now, _ = locker.clock.bounds()
        namespace = locker.namespace
        kind = locker.kind.lower()
    if record is None:
        say(f"no lock {args.name!r} in namespace {namespace!r} (no {kind} {record_name(args)})")
        return EXIT_NOT_FOUND
    (row,) = rows_of([record], now, namespace)
    if args.output in ("json", "yaml"):
        dump(row.to_dict(raw=True), args.output)
        return 0
    _describe(row, kind)
    return 0


def record_name(args: argparse.Namespace) -> str:
    return f"{args.prefix}-{args.name}"


def _describe(r: LockRow, kind: str) -> None:
    lines: list[tuple[str, str]] = [
        ("Name", r.name),
        ("Namespace", r.namespace),
        ("Object", f"{kind}/{r.object_name} (resourceVersion {r.version})"),
    ]
    if r.error is not None:
        lines.append(("State", f"MALFORMED: {r.error}"))
    else:
        lines.append(("Type", r.kind))
        if r.holders:
            for i, h in enumerate(r.holders):
                if h.expires is None:
                    left = "never expires"
                else:
                    secs = (h.expires - r.now).total_seconds()
                    left = f"expires in {human_seconds(max(0.0, secs))} ({format_time(h.expires)})"
                token = "" if h.token is None else f", token {h.token}"
                role = " (exclusive)" if h.exclusive else ""
                lines.append(("Holder" if i == 0 else "", f"{h.instance_id}{role}, {left}{token}"))
        else:
            lines.append(("Holder", "<none> (free)"))
        token = "-" if r.fencing_token is None else str(r.fencing_token)
        lines.append(("Fencing token", token))
        lines.append(("Tags", ", ".join(r.tags) or "<none>"))
    if r.waiters:
        for i, w in enumerate(r.waiters):
            lease = (
                "no expiry"
                if w.duration is None
                else f"lease {human_seconds(w.duration.total_seconds())}"
            )
            lines.append(("Waiters" if i == 0 else "", f"{i + 1}. {w.instance_id} ({lease})"))
    else:
        lines.append(("Waiters", "<none>"))
    age = "-" if r.created is None else f"{format_time(r.created)} ({_age(r)} ago)"
    lines.append(("Created", age))
    width = max(len(k) for k, _ in lines) + 2
    for key, value in lines:
        print(f"{key + ':' if key else '':<{width}}{value}")
