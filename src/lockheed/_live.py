"""The live view of locks: what changed, and how it is shown (pure: no I/O).

A :class:`Board` holds one :class:`Row` per lock and turns each new version
of a lock (from a watch) into :class:`Change` items: acquired, released,
handed off (the holder's release gave the lock to the first waiter), taken
over (a live holder replaced by someone not in line: a forced takeover),
expired (a lease ran out unrenewed: the holder crashed or lost the API
server), deleted, malformed, and changes of the line of waiters. Expiry is
judged on the API server's clock (the earliest bound, as the lockers judge
it), so :meth:`Board.expire` is called on a timer; nothing else needs one.

Two ways to show it: :func:`render_table` paints a table like ``kubectl get
-w`` for a terminal (changed rows marked ``>``, losses ``!``, coloured unless
``NO_COLOR``), and :func:`event_line` gives one timestamped line per change for
anything else (a pipe, a file, a dumb terminal).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from ._core import TOKEN_HOLDER_KEY, TOKEN_KEY
from ._queue import read_queue
from ._state import NEVER, Record

__all__ = [
    "Board",
    "Change",
    "Row",
    "Style",
    "event_line",
    "render_table",
    "row_of",
    "state_line",
]

#: Seconds a changed row stays marked in the table.
HIGHLIGHT_SECONDS = 4.0
#: A holder replaced (or cleared) within this long of its lease's end, on the
#: server's clock (earliest bound), is reported as expired, not as handing
#: the lock on: the ``Date`` headers that bound the clock have one-second
#: resolution, so a contender may rightly judge a lease over that much sooner.
EXPIRY_SLACK = timedelta(seconds=2)

Key = tuple[str, str]  # (namespace, lock name)


@dataclass(frozen=True)
class Row:
    """What the live view shows of one lock."""

    namespace: str
    name: str
    holder: str | None = None
    token: int | None = None
    expires: datetime | None = None  # None: held for good, or free
    waiters: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    error: str | None = None
    #: The holder's lease ran out unrenewed (shown until the next write).
    expired: bool = False

    @property
    def key(self) -> Key:
        return self.namespace, self.name


def row_of(namespace: str, record: Record, earliest: datetime) -> Row:
    """The row of ``record``; a lease is live while ``earliest`` (the server's
    time, earliest bound) is before its expiry."""
    waiters = tuple(w.instance_id for w in read_queue(record.meta))
    state = record.state
    if state is None:
        return Row(namespace, record.name, waiters=waiters, error=record.error or "malformed")
    live = state.live_leases(earliest)
    holder = live[0] if live else None
    token = None
    if holder is not None and record.meta.get(TOKEN_HOLDER_KEY) == holder.instance_id:
        try:
            token = int(record.meta.get(TOKEN_KEY, ""))
        except ValueError:
            token = None
    return Row(
        namespace,
        record.name,
        holder=holder.instance_id if holder else None,
        token=token,
        expires=None if holder is None or holder.expires >= NEVER else holder.expires,
        waiters=waiters,
        tags=tuple(state.tags),
    )


@dataclass(frozen=True)
class Change:
    """One change of one lock, as the live view reports it."""

    namespace: str
    name: str
    kind: str  # ACQUIRED, RELEASED, HANDED-OFF, TAKEN-OVER, EXPIRED, DELETED, LINE, ...
    text: str
    alarm: bool = False  # a loss: somebody held the lock and did not let it go
    token: int | None = None  # the new holder's fencing token

    @property
    def key(self) -> Key:
        return self.namespace, self.name


def _live_at(row: Row, earliest: datetime) -> bool:
    return row.holder is not None and (row.expires is None or earliest < row.expires)


def _line(waiters: tuple[str, ...]) -> str:
    return ", ".join(waiters) if waiters else "nobody"


def _changes(old: Row | None, new: Row | None, earliest: datetime) -> list[Change]:
    """What happened between two versions of one lock (None: no object)."""
    some = new or old
    assert some is not None
    ns, name = some.key

    def change(kind: str, text: str, alarm: bool = False) -> Change:
        return Change(ns, name, kind, text, alarm)

    def taken(kind: str, text: str, alarm: bool = False) -> Change:
        return Change(ns, name, kind, text, alarm, new.token if new is not None else None)

    if new is None:
        assert old is not None
        if _live_at(old, earliest):
            return [change("DELETED", f"deleted while {old.holder} held it", alarm=True)]
        return [change("DELETED", "deleted")]
    if new.error is not None:
        if old is not None and old.error == new.error:
            return []
        return [change("MALFORMED", f"malformed: {new.error}", alarm=True)]
    out: list[Change] = []
    # A new holder may rightly have judged the old lease over a little sooner.
    judged = earliest if old is not None and new.holder == old.holder else earliest + EXPIRY_SLACK
    was_held = old is not None and not old.expired and _live_at(old, judged)
    before = old.holder if old is not None and was_held else None
    if old is not None and old.holder is not None and not old.expired and not was_held:
        out.append(change("EXPIRED", f"{old.holder}'s lease ran out unrenewed", alarm=True))
    if new.holder != before:
        if before is None and new.holder is not None:
            out.append(taken("ACQUIRED", f"acquired by {new.holder}"))
        elif new.holder is None:
            out.append(change("RELEASED", f"released by {before}"))
        elif old is not None and new.holder in old.waiters:
            out.append(taken("HANDED-OFF", f"handed off {before} -> {new.holder}"))
        else:
            text = f"taken over from {before} by {new.holder}"
            out.append(taken("TAKEN-OVER", text, alarm=True))
    elif old is None:
        out.append(change("CREATED", "created, free"))
    old_line = old.waiters if old is not None else ()
    # A waiter that took the lock left the line by taking it: not news.
    taker = new.holder if new.holder != before else None
    if new.waiters != old_line and new.waiters != tuple(w for w in old_line if w != taker):
        out.append(change("LINE", f"waiting in line: {_line(new.waiters)}"))
    return out


@dataclass(frozen=True)
class _Mark:
    change: Change
    at: float  # monotonic


@dataclass
class Board:
    """The rows of the watched locks and their latest changes."""

    rows: dict[Key, Row] = field(default_factory=dict)
    #: The latest change of each lock but the line's (the WAITERS column shows
    #: that), with when it arrived; marked in the table for HIGHLIGHT_SECONDS.
    latest: dict[Key, _Mark] = field(default_factory=dict)

    def load(self, rows: Iterable[Row]) -> None:
        """Start from a listing: no changes reported."""
        self.rows = {row.key: row for row in rows}

    def apply(self, key: Key, new: Row | None, earliest: datetime, now: float) -> list[Change]:
        """A new version of one lock arrived (None: deleted); the changes it made."""
        old = self.rows.get(key)
        if old is None and new is None:
            return []
        changes = _changes(old, new, earliest)
        if new is None:
            self.rows.pop(key, None)
            self.latest.pop(key, None)
        else:
            self.rows[key] = new
        self._mark(changes, now)
        return changes

    def resync(self, rows: Iterable[Row], earliest: datetime, now: float) -> list[Change]:
        """After a fresh listing (the watch was lost): the changes since."""
        fresh = {row.key: row for row in rows}
        out: list[Change] = []
        for key in sorted(set(self.rows) | set(fresh)):
            if self.rows.get(key) != fresh.get(key):
                out += self.apply(key, fresh.get(key), earliest, now)
        return out

    def expire(self, earliest: datetime, now: float) -> list[Change]:
        """Leases that ran out unrenewed by the server's time ``earliest``."""
        out: list[Change] = []
        for key, row in sorted(self.rows.items()):
            if row.holder is not None and not row.expired and not _live_at(row, earliest):
                text = f"{row.holder}'s lease ran out unrenewed"
                out.append(Change(row.namespace, row.name, "EXPIRED", text, alarm=True))
                self.rows[key] = replace(row, expired=True)
        self._mark(out, now)
        return out

    def next_expiry(self) -> datetime | None:
        """The earliest expiry of a lease not yet reported expired."""
        times = [
            r.expires
            for r in self.rows.values()
            if r.holder is not None and not r.expired and r.expires is not None
        ]
        return min(times, default=None)

    def _mark(self, changes: list[Change], now: float) -> None:
        """Mark each lock's changes of one version as one (a loss among them wins)."""
        by_key: dict[Key, list[Change]] = {}
        for change in changes:
            if change.kind != "LINE":
                by_key.setdefault(change.key, []).append(change)
        for key, some in by_key.items():
            alarm = [c for c in some if c.alarm]
            first = alarm[0] if alarm else some[-1]
            text = "; ".join(c.text for c in some)
            self.latest[key] = _Mark(replace(first, text=text, alarm=bool(alarm)), now)

    def marked(self, key: Key, now: float) -> Change | None:
        """The change that marks the row of ``key`` now, if any."""
        mark = self.latest.get(key)
        return mark.change if mark is not None and now - mark.at < HIGHLIGHT_SECONDS else None


# -- showing it --------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    """How to paint: ANSI colours or not (``NO_COLOR``)."""

    color: bool = True

    def paint(self, text: str, change: Change | None) -> str:
        if not self.color or change is None:
            return text
        code = "1;31" if change.alarm else ("1;33" if change.kind == "LINE" else "1;32")
        return f"\x1b[{code}m{text}\x1b[0m"


def countdown(expires: datetime | None, earliest: datetime) -> str:
    """``12s``, ``3m05s``; whole seconds, rounded up, as a countdown reads."""
    if expires is None:
        return "never"
    seconds = max(0, math.ceil((expires - earliest).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d"


def _cells(row: Row, earliest: datetime, all_namespaces: bool) -> list[str]:
    if row.error is not None:
        cells = [row.name, "MALFORMED", "-", "-", "-"]
    else:
        expired = row.expired or (row.holder is not None and not _live_at(row, earliest))
        if row.holder is None:
            holder, expires = "-", "-"
        elif expired:
            holder, expires = f"({row.holder})", "expired"
        else:
            holder, expires = row.holder, countdown(row.expires, earliest)
        token = str(row.token) if row.token is not None and not expired else "-"
        waiters = ", ".join(row.waiters) if row.waiters else "-"
        cells = [row.name, holder, token, expires, waiters]
    return [row.namespace, *cells] if all_namespaces else cells


def _ago(seconds: float) -> str:
    return "just now" if seconds < 1 else f"{int(seconds)}s ago"


def render_table(
    board: Board,
    earliest: datetime,
    now: float,
    *,
    all_namespaces: bool = False,
    style: Style = Style(),
    height: int = 0,
    width: int = 0,
) -> list[str]:
    """The table's lines, header first: one row per lock, sorted, the changed
    ones marked (``>``; ``!`` for a loss). ``height``/``width`` (0: no limit)
    clip it to the terminal."""
    header = ["NAME", "HOLDER", "TOKEN", "EXPIRES IN", "WAITERS", "CHANGE"]
    if all_namespaces:
        header = ["NAMESPACE", *header]
    body: list[tuple[list[str], Change | None]] = []
    for key, row in sorted(board.rows.items()):
        mark = board.marked(key, now)
        latest = board.latest.get(key)
        note = "" if latest is None else f"{latest.change.text}, {_ago(now - latest.at)}"
        body.append(([*_cells(row, earliest, all_namespaces), note], mark))
    widths = [len(h) for h in header]
    for cells, _ in body:
        widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]

    def line(cells: list[str], lead: str) -> str:
        text = lead + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        return text[:width] if width else text

    lines = [line(header, "  ")]
    shown = body
    if height and len(body) > height - 1:
        shown = body[: max(0, height - 2)]
    for cells, mark in shown:
        lead = "  " if mark is None else ("! " if mark.alarm else "> ")
        lines.append(style.paint(line(cells, lead), mark))
    if len(shown) < len(body):
        lines.append(f"  ... and {len(body) - len(shown)} more")
    if not body:
        lines.append("  (no locks yet)")
    return lines


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _where(namespace: str, name: str, all_namespaces: bool) -> str:
    return f"{namespace}/{name}" if all_namespaces else name


def event_line(change: Change, when: datetime, *, all_namespaces: bool = False) -> str:
    """``2026-11-30T06:41:07.120Z demo HANDED-OFF handed off alice -> bob (token 4211)``"""
    where = _where(change.namespace, change.name, all_namespaces)
    token = f" (token {change.token})" if change.token is not None else ""
    return f"{_stamp(when)} {where} {change.kind} {change.text}{token}"


def state_line(row: Row, earliest: datetime, when: datetime, *, all_namespaces: bool) -> str:
    """The line that shows a lock's state when the watch starts."""
    where = _where(row.namespace, row.name, all_namespaces)
    if row.error is not None:
        return f"{_stamp(when)} {where} MALFORMED {row.error}"
    line = f" waiting in line: {', '.join(row.waiters)}" if row.waiters else ""
    if row.holder is None:
        return f"{_stamp(when)} {where} FREE{line}"
    token = f", token {row.token}" if row.token is not None else ""
    expires = countdown(row.expires, earliest)
    return f"{_stamp(when)} {where} HELD by {row.holder}{token}, expires in {expires}{line}"
