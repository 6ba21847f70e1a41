"""``lockheed watch [NAME]``: the locks of a namespace (or ``-A``: all), live.

On a terminal: a table like ``kubectl get -w`` (NAME, HOLDER, TOKEN, EXPIRES
IN, WAITERS, CHANGE), repainted in place; hand-offs are marked ``>`` (green),
losses (an expired lease, a forced takeover, a lock deleted while held) ``!``
(red). Colour follows ``NO_COLOR``. Anywhere else (a pipe, a file,
``TERM=dumb``, or ``--events``): one timestamped line per lock at the start
(``HELD``/``FREE``) and then one per change (``ACQUIRED``, ``RELEASED``,
``HANDED-OFF``, ``TAKEN-OVER``, ``EXPIRED``, ``DELETED``, ``LINE``, ...).

``--where EXPR``, ``-l SELECTOR`` and ``--tag`` select locks as ``lockheed
list`` does (the same language, the same errors: exit 2 with a caret under
the bad token, before anything is read). The selection is applied to each
lock as it changes (when it is listed and at every new version watched): a
lock that comes to match appears with the change that made it match, one
that stops matching is reported with that change and then left out. Tests
that depend on the time (``expires``, ``acquired`` once a lease runs out)
are judged at each change too, so a lock stays shown, its lease marked
expired, until its next change. Malformed lock objects are always shown.

It is watch-driven: one LIST, then one WATCH of the lock objects (label
``lockheed/lock``; with NAME also a ``metadata.name`` field selector), read
in the background by :class:`~lockheed._async.watcher.WatchStream`; the only
timer repaints the countdown and notices leases that ran out unrenewed (on
the API server's clock, as the lockers judge expiry). Nothing is written.

Failure semantics: the server ending the watch opens it again from the last
version seen (bookmarks included); a 410 Gone, or a broken connection, lists
again and reports what changed meanwhile; while the API server is unreachable
it retries every few seconds and says so (on the table, or on standard error
for event lines, with a line when it is back). A refusal (401, 403: ``list``
and ``watch`` are needed) ends it with the error, exit 1. A namespace with no
locks, or none at all, shows none (as ``kubectl get -w`` does) and says so on
standard error in event-line mode. Ctrl-C or SIGTERM ends it with status 0,
the terminal's cursor restored.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncGenerator
from datetime import datetime, timezone
from types import FrameType
from typing import IO, Any

import httpx2 as httpx

from ._async.configmap import AsyncConfigMapLocker
from ._async.lease import AsyncLeaseLocker
from ._async.watcher import WatchStream
from ._cli_common import EXIT_USAGE, add_backend, add_connection, make_async_locker
from ._cli_list import WHERE_EPILOG, SelectionError, add_selection, selection
from ._cli_where import Facts, Where
from ._codec import LABEL, decode_configmap, lock_name_of
from ._errors import LockBackendError, LockError, LockForbidden
from ._kubecfg import forbidden, reason, request_timeout
from ._leasecodec import decode_lease
from ._live import Board, Change, Key, Row, Style, event_line, render_table, row_of, state_line
from ._state import Record

__all__ = ["Follow", "Source", "add_watch_parser", "facts_of", "live_output"]

#: The countdown's repaint interval (seconds).
REPAINT_INTERVAL = 0.5
#: Pause between attempts while the API server cannot be reached.
RETRY_INTERVAL = 2.0
_WATCH_SECONDS = 300
_PAGE = 500
_UTC = timezone.utc


def _now_utc() -> datetime:
    return datetime.now(_UTC)


def facts_of(row: Row, earliest: datetime) -> Facts:
    """What ``--where`` sees of a row, at the server's time ``earliest``."""
    live = row.holder is not None and not row.expired
    if live and row.expires is not None and row.expires <= earliest:
        live = False
    left: float | None = None
    if live:
        left = math.inf if row.expires is None else (row.expires - earliest).total_seconds()
    holders = (row.holder,) if live and row.holder is not None else ()
    return Facts(row.name, frozenset(row.tags), holders, left, len(row.waiters))


class Source:
    """Lists and watches the lock objects of a locker's namespace, or of all."""

    def __init__(
        self,
        locker: AsyncConfigMapLocker | AsyncLeaseLocker,
        *,
        all_namespaces: bool = False,
        name: str | None = None,
        where: Where | None = None,
    ):
        self.locker = locker
        self.api = locker.api
        self.all_namespaces = all_namespaces
        self.where_ = where
        self.lease = isinstance(locker, AsyncLeaseLocker)
        api_path = self.api.base.split("/namespaces/")[0]
        self.path = f"{api_path}/{self.api.resource}" if all_namespaces else self.api.base
        self.params = {"labelSelector": LABEL}
        if name is not None:
            self.params["fieldSelector"] = f"metadata.name={locker.object_name(name)}"
        self._seen: dict[Key, tuple[str, datetime]] = {}

    @property
    def where(self) -> str:
        return "all namespaces" if self.all_namespaces else f"namespace {self.api.namespace}"

    def earliest(self) -> datetime:
        """The server's time now, earliest bound (as expiry is judged)."""
        return self.api.clock.bounds()[0]

    def row(self, obj: Any) -> tuple[Key, Row] | None:
        """The row of a listed or watched object; None when it is not one of this
        locker's locks."""
        meta = obj.get("metadata") or {}
        name = lock_name_of(self.locker.prefix, str(meta.get("name", "")))
        if name is None:
            return None
        namespace = str(meta.get("namespace") or self.api.namespace)
        key = (namespace, name)
        record = self._decode(key, obj)
        return key, row_of(namespace, record, self.earliest())

    def shows(self, row: Row) -> bool:
        """Whether the selection (``--where``, ``-l``, ``--tag``) holds for ``row`` now;
        a malformed lock is always shown."""
        if self.where_ is None or row.error is not None:
            return True
        return self.where_.matches(facts_of(row, self.earliest()))

    def _decode(self, key: Key, obj: Any) -> Record:
        if not self.lease:
            return decode_configmap(key[1], obj)
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        seen = self._seen.get(key)
        if seen is None or seen[0] != version:
            seen = self._seen[key] = (version, self.api.clock.bounds()[1])
        return decode_lease(key[1], obj, seen[1])

    def _refused(self, resp: httpx.Response, watch: bool) -> LockError:
        if not self.all_namespaces:
            return forbidden("GET", resp, self.api.resource, self.api.namespace, None, watch)
        verb = "watch" if watch else "list"
        return LockForbidden(
            f"{resp.status_code} from the API server: watching all namespaces needs "
            f"permission to '{verb}' {self.api.resource} cluster-wide ({reason(resp)})",
            verb=verb,
            resource=self.api.resource,
        )

    def _failed(self, what: str, resp: httpx.Response) -> LockError:
        if resp.status_code in (401, 403):
            return self._refused(resp, what == "watch")
        if resp.status_code == 404:
            return LockBackendError(f"{self.where} not found ({reason(resp)})")
        return LockBackendError(
            f"{what} {self.api.resource}: HTTP {resp.status_code}: {reason(resp)}",
            transient=resp.status_code == 429 or resp.status_code >= 500,
        )

    async def list(self) -> tuple[dict[Key, Row], str]:
        """Every lock (shown or not), and the version to watch from (paginated LIST)."""
        params = {**self.params, "limit": str(_PAGE)}
        rows: dict[Key, Row] = {}
        while True:
            sent = self.api.clock.monotonic()
            try:
                resp = await self.api.client.get(
                    self.path, params=params, timeout=request_timeout()
                )
            except httpx.HTTPError as exc:
                raise LockBackendError(
                    f"list {self.api.resource}: {exc!r}",
                    transient=isinstance(exc, httpx.TransportError),
                ) from exc
            self.api.clock.observe_http_date(
                resp.headers.get("date"), sent, self.api.clock.monotonic()
            )
            if resp.status_code != 200:
                raise self._failed("list", resp)
            body = resp.json()
            for obj in body.get("items") or ():
                found = self.row(obj)
                if found is not None:
                    rows[found[0]] = found[1]
            metadata = body.get("metadata") or {}
            if not metadata.get("continue"):
                return rows, str(metadata.get("resourceVersion", ""))
            params = {**params, "continue": metadata["continue"]}

    async def watch(self, version: str) -> AsyncGenerator[tuple[str, Any], None]:
        """``(type, object)`` events from ``version`` until the server ends the watch."""
        params = {
            **self.params,
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(_WATCH_SECONDS),
        }
        timeout = httpx.Timeout(request_timeout(), read=_WATCH_SECONDS + 30)
        try:
            async with self.api.watch_client.stream(
                "GET", self.path, params=params, timeout=timeout
            ) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    raise self._failed("watch", resp)
                async for line in resp.aiter_lines():
                    if line:
                        event = json.loads(line)
                        yield str(event.get("type", "")), event.get("object") or {}
        except httpx.TimeoutException:
            return
        except httpx.HTTPError as exc:
            raise LockBackendError(
                f"watch {self.api.resource}: {exc!r}",
                transient=isinstance(exc, httpx.TransportError),
            ) from exc


class Output:
    """Where the changes go: a live table or event lines."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.board = Board()
        #: The latest version of each lock the selection leaves out.
        self.hidden: dict[Key, Row] = {}
        #: Every change reported, in order.
        self.history: list[Change] = []
        #: Locks that came to match the selection without a change to report.
        self.entered: list[Row] = []
        self._seen = asyncio.Event()  # set whenever the board was looked at anew

    def start(self, rows: dict[Key, Row]) -> dict[Key, Row]:
        """Start from a listing of every lock; returns the rows shown."""
        shown = {key: row for key, row in rows.items() if self.source.shows(row)}
        self.hidden = {key: row for key, row in rows.items() if key not in shown}
        self.board.load(shown.values())
        return shown

    def apply(self, key: Key, row: Row | None) -> list[Change]:
        """A new version of one lock (None: deleted); the changes shown."""
        self.entered = []
        earliest, now = self.source.earliest(), time.monotonic()
        before = self.hidden.pop(key, None)
        if before is not None:  # not shown so far
            if row is None or not self.source.shows(row):
                if row is not None:
                    self.hidden[key] = row
                return []
            self.board.rows[key] = before  # to tell what changed as it comes to match
        elif key not in self.board.rows and row is not None and not self.source.shows(row):
            self.hidden[key] = row  # a new lock the selection leaves out
            return []
        changes = self.board.apply(key, row, earliest, now)
        if row is not None and not self.source.shows(row):  # reported, then left out
            self.board.rows.pop(key, None)
            self.board.latest.pop(key, None)
            self.hidden[key] = row
        elif before is not None and not changes and row is not None:
            self.entered = [row]
        return self._kept(changes)

    def resync(self, rows: dict[Key, Row]) -> list[Change]:
        """After a fresh listing (the watch was lost): the changes since."""
        changes: list[Change] = []
        entered: list[Row] = []
        for key in sorted(set(self.board.rows) | set(self.hidden) | set(rows)):
            if self.board.rows.get(key, self.hidden.get(key)) != rows.get(key):
                changes += Output.apply(self, key, rows.get(key))  # reported once, below
                entered += self.entered
        self.entered = entered
        return changes

    def tick(self) -> list[Change]:
        return self._kept(self.board.expire(self.source.earliest(), time.monotonic()))

    def _kept(self, changes: list[Change]) -> list[Change]:
        self.history += changes
        self._seen.set()
        return changes

    async def settled(self) -> None:
        """Return once no lease shown is live: each has been released or has
        run out (as the view's timer reports it). Needs a running :class:`Follow`."""
        while self.board.next_expiry() is not None:
            self._seen.clear()
            await self._seen.wait()

    def status(self, message: str | None) -> None:
        """Say that the API server cannot be reached (None: it can again)."""

    def timeout(self) -> float | None:
        """Seconds until the next timer work: the next lease's expiry."""
        expiry = self.board.next_expiry()
        if expiry is None:
            return None
        return max(0.05, (expiry - self.source.earliest()).total_seconds() + 0.05)

    def close(self) -> None:
        """Leave the terminal as it was."""


class EventLines(Output):
    """One timestamped line per change, for pipes, files and dumb terminals."""

    def __init__(self, source: Source, out: IO[str]) -> None:
        super().__init__(source)
        self.out = out
        self._trouble = False

    def _write(self, lines: list[str]) -> None:
        if lines:
            self.out.write("".join(f"{line}\n" for line in lines))
            self.out.flush()

    def _changes(self, changes: list[Change]) -> list[Change]:
        now = _now_utc()
        every = self.source.all_namespaces
        self._write([event_line(c, now, all_namespaces=every) for c in changes])
        return changes

    def _states(self, rows: list[Row]) -> None:
        now, earliest = _now_utc(), self.source.earliest()
        every = self.source.all_namespaces
        self._write([state_line(r, earliest, now, all_namespaces=every) for r in rows])

    def start(self, rows: dict[Key, Row]) -> dict[Key, Row]:
        shown = super().start(rows)
        self._states([row for _, row in sorted(shown.items())])
        if not shown:
            what = "match" if rows else "yet"
            self._say(f"no locks in {self.source.where} {what}; one line per change follows")
        return shown

    def apply(self, key: Key, row: Row | None) -> list[Change]:
        changes = self._changes(super().apply(key, row))
        self._states(self.entered)  # came to match with nothing else to report
        return changes

    def resync(self, rows: dict[Key, Row]) -> list[Change]:
        changes = self._changes(super().resync(rows))
        self._states(self.entered)
        return changes

    def tick(self) -> list[Change]:
        return self._changes(super().tick())

    def status(self, message: str | None) -> None:
        if message is not None:
            self._trouble = True
            self._say(message)
        elif self._trouble:
            self._trouble = False
            self._say("reached the API server again")

    def _say(self, message: str) -> None:
        print(f"lockheed watch: {message}", file=sys.stderr, flush=True)


class LiveTable(Output):
    """The table, repainted in place on a terminal."""

    def __init__(self, source: Source, out: IO[str], style: Style, title: str = "") -> None:
        super().__init__(source)
        self.out = out
        self.style = style
        self.title = title or f"lockheed watch: {source.where}"
        self._painted = 0
        self._status: str | None = None
        self.out.write("\x1b[?25l")  # hide the cursor while painting

    def paint(self) -> None:
        size = shutil.get_terminal_size()
        clock = time.strftime("%H:%M:%S")
        head = f"{self.title}  {clock}  (Ctrl-C to stop)"
        lines = [head[: size.columns]]
        if self._status:
            lines.append(self.style.paint(f"  {self._status}"[: size.columns], _TROUBLE))
        lines += render_table(
            self.board,
            self.source.earliest(),
            time.monotonic(),
            all_namespaces=self.source.all_namespaces,
            style=self.style,
            height=max(3, size.lines - len(lines) - 1),
            width=size.columns,
        )
        up = f"\x1b[{self._painted}F" if self._painted else ""
        self.out.write(up + "".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J")
        self.out.flush()
        self._painted = len(lines)

    def start(self, rows: dict[Key, Row]) -> dict[Key, Row]:
        shown = super().start(rows)
        self.paint()
        return shown

    def apply(self, key: Key, row: Row | None) -> list[Change]:
        changes = super().apply(key, row)
        self.paint()
        return changes

    def resync(self, rows: dict[Key, Row]) -> list[Change]:
        changes = super().resync(rows)
        self.paint()
        return changes

    def tick(self) -> list[Change]:
        changes = super().tick()
        self.paint()
        return changes

    def status(self, message: str | None) -> None:
        self._status = message
        self.paint()

    def timeout(self) -> float | None:
        return REPAINT_INTERVAL  # the clock and the countdowns

    def close(self) -> None:
        self.out.write("\x1b[?25h")
        self.out.flush()


_TROUBLE = Change("", "", "TROUBLE", "", alarm=True)


def live_output(source: Source, out: IO[str], *, events: bool = False, title: str = "") -> Output:
    """A live table on a capable terminal, else event lines."""
    dumb = os.environ.get("TERM", "") in ("", "dumb")
    if events or dumb or not out.isatty():
        return EventLines(source, out)
    return LiveTable(source, out, Style(color=not os.environ.get("NO_COLOR")), title)


class Follow:
    """List, then watch, feeding an :class:`Output` until cancelled."""

    def __init__(self, source: Source, output: Output) -> None:
        self.source = source
        self.output = output

    async def _list(self) -> tuple[dict[Key, Row], str]:
        while True:
            try:
                listed = await self.source.list()
            except LockBackendError as exc:
                if not exc.transient:
                    raise
                self.output.status(f"cannot reach the API server, retrying: {exc}")
                await asyncio.sleep(RETRY_INTERVAL)  # pacing the retries
                continue
            self.output.status(None)
            return listed

    async def run(self) -> None:
        rows, version = await self._list()
        self.output.start(rows)
        stream: WatchStream | None = None
        try:
            while True:
                if stream is None:
                    stream = WatchStream().start(self.source.watch(version))
                item = await stream.next(self.output.timeout())
                if item is None:
                    self.output.tick()
                    continue
                kind, obj = item
                if kind in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind != "BOOKMARK":
                        self._changed(kind, obj)
                    continue
                await stream.close()
                stream = None
                if kind == "END":
                    continue  # the server ended the watch: from the last version seen
                if kind == "BROKEN" and not (isinstance(obj, LockBackendError) and obj.transient):
                    raise obj
                # 410 Gone, or the connection broke: list again, report what changed
                rows, version = await self._list()
                self.output.resync(rows)
        finally:
            if stream is not None:
                await stream.close()

    def _changed(self, kind: str, obj: Any) -> None:
        found = self.source.row(obj)
        if found is None:
            return
        key, row = found
        self.output.apply(key, None if kind == "DELETED" else row)


async def _watch_async(args: argparse.Namespace, where: Where | None) -> None:
    async with make_async_locker(args) as locker:
        source = Source(locker, all_namespaces=args.all_namespaces, name=args.name, where=where)
        output = live_output(source, sys.stdout, events=args.events)
        try:
            await Follow(source, output).run()
        finally:
            output.close()


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _watch(args: argparse.Namespace) -> int:
    try:
        where = selection(args)
    except SelectionError as exc:
        print(f"lockheed watch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    previous = signal.signal(signal.SIGTERM, _interrupt)  # ends it as Ctrl-C does
    try:
        asyncio.run(_watch_async(args, where))
    except KeyboardInterrupt:
        print(file=sys.stdout, flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def add_watch_parser(sub: Any) -> None:
    """Register ``watch`` with the subcommands of ``lockheed``."""
    watch = sub.add_parser(
        "watch",
        help="watch locks change hands, live",
        description="A live table of the locks (hand-offs and losses marked); on a pipe "
        "or a dumb terminal, one timestamped line per change. The selection (--where, -l, "
        "--tag) is applied to each lock as it changes. Ctrl-C ends it.",
        epilog=f"{WHERE_EPILOG} Exit statuses: 0 ended by Ctrl-C or SIGTERM; 1 an error "
        "(one line on standard error; RBAC: it needs 'list' and 'watch'); 2 bad usage "
        "(options, lock name, --where, -l).",
    )
    add_connection(watch, all_namespaces=True)
    add_backend(watch)
    watch.add_argument("name", nargs="?", metavar="NAME", help="only this lock")
    add_selection(watch)
    watch.add_argument(
        "--events", action="store_true", help="one line per change, even on a terminal"
    )
    watch.set_defaults(func=_watch)
