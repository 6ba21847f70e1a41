"""The line of waiters kept in a lock's object (pure: no I/O).

Waiters line up in the annotation ``lockheed/queue`` of the lock's object, a
compact JSON list in arrival order: ``[{"id": "<instance ID>", "d": 30}]``
(``d``: the waiter's lease duration in seconds, 0 for a lease that never
expires; ``t``: the tags it asks for, and ``r``: true when they replace the
lock's tags, both only when given; ``x``: true for an exclusive waiter of a
shared lock, only when set; ``v``: the resourceVersion of the object the
waiter had seen when it began to ask, which orders the line: see
:func:`place_of`), so that the write that hands the lock to a waiter also
gives the lock that waiter's tags. Go lockheed keeps
annotations it does not know on its own writes, so the line survives Go's
writes next to its ``data.lock`` document.

An annotation that cannot be read is treated as an empty line (and rewritten
by the next write that changes the line): a damaged line must not stop the
lock itself from working.

Every lockheed write also labels the object for the instances that must see
each of its changes (:func:`view_labels`): every holder and, unless a
lockheed holder alone holds the lock, the first two waiters in line
(:func:`in_view`), each as ``lockheed/w.<instance ID>: "1"``
(:func:`view_label`). A waiter watches with its label as the selector, so the
API server sends it nothing until a release hands it the lock, or the lock
is free or held by Go lockheed while it is at the head of the line (or its
wait's time is up, or its look comes, and it reads): a change of a lock many
take turns on is delivered to the holders that it concerns, not to the line.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Literal

__all__ = [
    "IN_VIEW",
    "QUEUE_KEY",
    "VIEW_PREFIX",
    "Waiter",
    "in_view",
    "place_in_line",
    "place_of",
    "queue_meta",
    "read_queue",
    "view_label",
    "view_labels",
    "with_view_labels",
]

QUEUE_KEY: Final = "lockheed/queue"
# The labels naming the instances that must see every change of the object.
VIEW_PREFIX: Final = "lockheed/w."
# How many waiters at the head of the line are labelled to see every change, at
# most (see in_view).
IN_VIEW: Final = 2
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


@dataclass(frozen=True)
class Waiter:
    """One instance waiting in line, and the lease it asked for."""

    instance_id: str
    duration: timedelta | None  # None: its lease would never expire
    tags: tuple[str, ...] = ()
    reset_tags: bool = False
    exclusive: bool = False  # an exclusive (writer) waiter of a shared lock
    # The version of the object this waiter had seen when it began to ask (None:
    # not known, e.g. an entry written by an older lockheed).
    since: int | None = None


def read_queue(meta: Mapping[str, str]) -> tuple[Waiter, ...]:
    """The line stored in ``meta`` (an object's annotations), in arrival order."""
    text = meta.get(QUEUE_KEY)
    if not text:
        return ()
    return _parse(text)


def place_in_line(meta: Mapping[str, str], instance_id: str) -> int | None:
    """Where ``instance_id`` stands in the line stored in ``meta`` (0: first),
    or None when it is not in it."""
    text = meta.get(QUEUE_KEY)
    return _places(text).get(instance_id) if text else None


@functools.lru_cache(maxsize=256)
def _places(text: str) -> dict[str, int]:
    # Remembered like the line: a filter of each waiter of a process asks it of
    # every version (never mutated: callers only read it).
    return {w.instance_id: i for i, w in enumerate(_parse(text))}


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> tuple[Waiter, ...]:
    """The line stored as ``text`` (remembered: every waiter on a lock decides on
    the same versions, and the result is immutable)."""
    try:
        items = json.loads(text)
    except ValueError:
        return ()
    if not isinstance(items, list):
        return ()
    out: list[Waiter] = []
    seen: set[str] = set()
    for item in items:
        waiter: Waiter | Literal[False] | None = None
        if type(item) is dict and len(item) == 3:  # the usual entry: {"id", "d", "v"}
            # A line of many waiters changes by an entry or two from one version
            # to the next: its entries are made once (by exact type: no bool).
            key = (item.get("id"), item.get("d"), item.get("v"))
            if type(key[0]) is str and type(key[1]) in _NUMBER and type(key[2]) is int:
                waiter = _ENTRIES.get(key)
                if waiter is None:
                    waiter = _entry(item)
                    if len(_ENTRIES) >= _ENTRIES_MAX:
                        _ENTRIES.clear()
                    _ENTRIES[key] = waiter
        if waiter is None:
            waiter = _entry(item)
        if waiter is not False and waiter.instance_id not in seen:
            seen.add(waiter.instance_id)
            out.append(waiter)
    return tuple(out)


# Entries made from the usual form, by (id, d, v); False: not a valid entry.
_ENTRIES: dict[tuple[object, object, object], Waiter | Literal[False]] = {}
_ENTRIES_MAX: Final = 4096
_NUMBER: Final = (int, float)  # a duration as written: 30.0 (a float), or 30


def _entry(item: object) -> Waiter | Literal[False]:
    """One stored entry as a waiter (False: not a valid entry, skipped)."""
    if not isinstance(item, dict):
        return False
    who, seconds = item.get("id"), item.get("d", 0)
    if not isinstance(who, str) or not who:
        return False
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return False
    if not 0 <= seconds < 1e9:
        return False
    tags = item.get("t", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        tags = []
    since = item.get("v")
    if isinstance(since, bool) or not isinstance(since, int) or since < 0:
        since = None
    return Waiter(
        who,
        timedelta(seconds=seconds) if seconds else None,
        tuple(tags),
        item.get("r") is True,
        exclusive=item.get("x") is True,
        since=since,
    )


def place_of(queue: tuple[Waiter, ...], since: int | None) -> int:
    """Where a newcomer that began to ask at version ``since`` joins ``queue``: at
    the end, but ahead of the waiters at the end of the line that began to ask
    at a later version than it did (they joined first only because their write
    won a race with ours). Entries without a version, and everyone once an
    entry without one is reached, keep their places: the line is never
    reordered, and nobody is ever passed by a newcomer that began to ask after
    it (its version is at least the object's version when it joined)."""
    place = len(queue)
    if since is None:
        return place
    while place > 0:
        ahead = queue[place - 1].since
        if ahead is None or ahead <= since:
            break
        place -= 1
    return place


def queue_meta(queue: Iterable[Waiter]) -> dict[str, str | None]:
    """The annotation change that stores ``queue`` (removing it when empty)."""
    items: list[dict[str, object]] = []
    for w in queue:
        item: dict[str, object] = {
            "id": w.instance_id,
            "d": 0 if w.duration is None else w.duration.total_seconds(),
        }
        if w.tags:
            item["t"] = list(w.tags)
        if w.reset_tags:
            item["r"] = True
        if w.exclusive:
            item["x"] = True
        if w.since is not None:
            item["v"] = w.since
        items.append(item)
    if not items:
        return {QUEUE_KEY: None}
    return {QUEUE_KEY: json.dumps(items, separators=(",", ":"))}


@functools.lru_cache(maxsize=1024)
def view_label(instance_id: str) -> str:
    """The label key that names ``instance_id`` as one that must see every change:
    ``lockheed/w.<instance ID>`` when that is a valid label name (at most 63
    characters of ``[A-Za-z0-9-_.]``, alphanumeric at both ends, as a UUID is),
    else ``lockheed/w.h.`` and 40 hex digits of its SHA-256."""
    name = "w." + instance_id
    if len(name) <= 63 and _LABEL_NAME.fullmatch(name):
        return "lockheed/" + name
    digest = hashlib.sha256(instance_id.encode("utf-8", "surrogatepass")).hexdigest()
    return VIEW_PREFIX + "h." + digest[:40]


def in_view(holders: Iterable[str], owner: str | None) -> int:
    """How many waiters at the head of a line are labelled to see every change of
    an object whose leases are ``holders`` and whose fencing token is held by
    ``owner`` (None: by nobody): none while the owner's lease is the only one
    (a lockheed holder, whose release hands the lock to the first waiter and
    labels it in that write), else :data:`IN_VIEW`. The lock is then free, or
    held by another writer (Go lockheed), whose release is a write that labels
    nobody: the first must see it, and the second too, to take over from a
    first waiter that died within ``CLAIM_WINDOW`` of it."""
    ids = set(holders)
    return 0 if owner is not None and ids == {owner} else IN_VIEW


def view_labels(
    holders: Iterable[str], queue: tuple[Waiter, ...], owner: str | None = None
) -> frozenset[str]:
    """The view labels of an object whose leases are ``holders`` (every lease
    stored, live or not: a holder sees the change that ends its lease), whose
    fencing token is held by ``owner`` and whose line is ``queue``: those
    holders and the first :func:`in_view` waiters. Behind a lockheed holder
    the line needs no label: the release hands the lock to the first waiter
    and labels it in that write, and the end of a lease that nobody renews is
    a time the waiters know (their waits end then, and they read). Where no
    write comes at all (a waiter handed the lock died: its short claim runs
    out unwritten), the first, like every waiter out of view, reads by its
    look (``lockheed._core._look``). A free lock, or one held by Go lockheed,
    whose release is a write that labels nobody, shows every change to the
    first two waiters: the first takes a free lock, and the second takes over
    after ``CLAIM_WINDOW`` from a first that died."""
    ids = set(holders)
    shown = in_view(ids, owner)
    ids.update(w.instance_id for w in queue[:shown])
    return frozenset(view_label(i) for i in ids)


def with_view_labels(labels: Mapping[str, str], wanted: frozenset[str]) -> dict[str, str]:
    """``labels`` with exactly ``wanted`` of the view labels (value ``"1"``); the
    other labels (``lockheed/lock``, other tools') are kept as they are."""
    out = {k: v for k, v in labels.items() if not k.startswith(VIEW_PREFIX) or k in wanted}
    for key in wanted:
        out[key] = "1"
    return out
