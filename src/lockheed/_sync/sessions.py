# Generated from lockheed/_async/sessions.py by scripts/unasync.py: do not edit.
"""Waiting on one object with as few requests as possible, for the Kubernetes lockers.

A waiting operation (an acquire) may wait many times in a row; each of its
waits is a :class:`~lockheed._core.Watch` effect carrying the operation's
``session``. The first wait subscribes to the lock's watch stream; later waits
of the same session read on from it (skipping changes already seen, such as
the waiter's own writes), so a waiter that is woken by every change of a busy
lock still sends one request for its whole wait. The waiters of one locker on
one lock with the same view (below) share one stream (:class:`~lockheed._async.watcher.Feed`), which
is read and decoded once per change however many wait. The shell ends the
session when the operation ends, which leaves the stream (closed when its
last waiter leaves).

After a release, the lock's session is *parked* (:meth:`Watches.park`):
its watch stays open for :data:`LINGER` seconds, so a lock that is acquired
again soon (a worker taking turns on a busy lock) waits on the watch it
already has instead of sending a new one; a parked watch unused for longer
is closed. A wait returns the newest version the stream has received, not
each one in turn. A wait that may not open a watch (``open`` False: a
release settling after a hand-off) is answered only from a stream that is
already open: with none, it returns UNCHANGED at once. The changes that a
wait's ``unless`` marks as nothing to its waiter are kept by the stream's
reader (:meth:`~lockheed._async.watcher.Subscriber.sleep_through`), so the
waiter is not woken for them; the newest is its result if its time runs out.

A fair mutex waiter's wait carries its ``view`` (its instance ID): its watch
then asks the server only for the versions that carry its view label (it
holds the lock or is first in line, or second while no lockheed holder alone
holds it: :func:`lockheed._queue.view_labels`), so a waiter further back is not sent,
and does not read, the changes of a busy lock. Such a watch shows an object
leaving the view as DELETED with the content of the version before, so that
event is never taken for a state: a later version than the wait's makes it
read the object (a real deletion reads None). A waiter out of view reads the
object when its wait's time is up (the lease it waits for may have been
renewed, or the line may have moved), or by the wait's ``look`` (more
waiters ahead of it may have died than are labelled); a quick look after a
conflict reads at once. A waiter in view (labelled) needs
no read. A session whose watch shows every change (one opened without a
view, e.g. for a lock's waiting observer) keeps it for waits without a view;
a later wait in line by its view trades it for a watch by that view (one
request), unless other waits of the locker share the lock's stream. A waiter whose locker
already watches the lock for other waiters (the asyncio tasks of one
process) shares that locker's stream and sees every change: one stream read
once for many waiters costs the host less than one watch each.

Failure semantics: a stream that the server ends is opened again; one that
breaks, or answers 410 Gone, makes the wait return a fresh read (what
changed meanwhile is unknown); one that the server refuses (403, 401) or
that fails for good raises its error. An idle stream is replaced after
:data:`WATCH_LIFETIME`, so a silently dead connection cannot hide changes
for longer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .._core import UNCHANGED, Read, Watch
from .._errors import LockBackendError
from .._queue import view_label
from .._state import Record
from .kube import KubeAPI
from .watcher import Feed, Subscriber

__all__ = ["Watches"]

# A waiting operation keeps its watch open this long at most without events
# (the server ends it then, and it is opened again).
WATCH_LIFETIME = 60.0
# A released lock's watch is kept open this long for its next acquire.
LINGER = 5.0


def _transient(error: Any) -> bool:
    return isinstance(error, LockBackendError) and error.transient


def _newer(obj: Any, version: str | None) -> bool:
    """Whether the watched object ``obj`` is a later version than ``version``."""
    if version is None:
        return True
    seen = str((obj.get("metadata") or {}).get("resourceVersion", ""))
    try:
        return int(seen) > int(version)
    except ValueError:
        return seen != version


def _newest(stream: Subscriber, obj: Any) -> Any:
    """``obj``, or a later version of it that the stream has already received."""
    while (item := stream.poll()) is not None:
        kind, later = item
        if kind not in ("ADDED", "MODIFIED"):
            stream.unget(item)  # for the next wait to handle
            break
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        if _newer(later, version):
            obj = later
    return obj


class Watches:
    """The watch sessions of one locker."""

    def __init__(
        self,
        api: KubeAPI,
        object_name: Callable[[str], str],
        decode: Callable[[str, Any], Record],
        execute: Callable[[Any], Any],
    ):
        self.api, self.object_name, self.decode, self.execute = api, object_name, decode, execute
        self._streams: dict[object, Subscriber] = {}  # open streams by session
        # The shared watch of each lock, by its name and view (None: every change).
        self._feeds: dict[tuple[str, str | None], Feed] = {}
        self._decoded: tuple[Any, Record] | None = None  # the last object decoded
        self._parked: dict[object, float] = {}  # parked sessions: when to close them
        self._waiting: dict[object, str] = {}  # the lock each session waited on, until it ends

    def watch(self, effect: Watch) -> Any:
        """Perform a :class:`~lockheed._core.Watch` effect."""
        clock = self.api.clock
        session = effect.session
        self._sweep()
        self._parked.pop(session, None)
        stream = self._streams.pop(session, None) if session is not None else None
        if stream is not None and stream.filtered and effect.view is None and not effect.quick:
            # This wait needs every change (a waiting observer, a waiter not in
            # line): a watch by view would not show them.
            stream.close()
            stream = None
        if (
            stream is not None
            and not stream.filtered
            and effect.view is not None
            and not effect.quick
            and not self._watched(effect.name, session, stream)
        ):
            # A waiter in line kept the watch of every change that an earlier
            # wait of its session needed (not yet in line, say): watch by view
            # instead (one request), or a greedy worker that takes the lock again
            # and again within LINGER would read every change for good.
            stream.close()
            stream = None
        if not effect.open and stream is None:
            return UNCHANGED  # no watch open, and none to be opened for this
        if session is not None:
            self._waiting[session] = effect.name
        if stream is None and effect.view is not None and self._watched(effect.name, session):
            # Others of this locker watch the lock already (the asyncio tasks of
            # one process): share their stream, read once for all, as it is.
            effect = replace(effect, view=None)
        if stream is None and effect.quick and effect.view is not None:
            return self.execute(Read(effect.name))  # a look, and no watch shows it all
        skipped: Record | None = None
        try:
            if stream is not None:
                self._sleep_through(stream, effect)
            while True:
                # What the stream has received already counts, even when the time is up.
                item = None if stream is None else stream.poll()
                if item is None:
                    if stream is not None:
                        blind = stream.filtered and not stream.in_view
                    else:
                        blind = effect.view is not None
                    if blind and effect.quick:  # the newer version may never show: read
                        return self.execute(Read(effect.name)) if effect.open else UNCHANGED
                    timeout = None
                    until = effect.until
                    if blind and effect.look is not None:  # out of view: read by then
                        until = effect.look if until is None else min(until, effect.look)
                    if until is not None:
                        timeout = until - clock.monotonic()
                        if timeout <= 0:  # the newest version slept through, if any
                            if blind:  # its view may be stale: read before deciding
                                return self.execute(Read(effect.name))
                            skipped = self._skipped(stream, effect.name, skipped)
                            return UNCHANGED if skipped is None else skipped
                    if stream is None:
                        if not effect.open:
                            return UNCHANGED
                        stream = self._subscribe(effect.name, effect.version, effect.view)
                        self._sleep_through(stream, effect)
                    item = stream.next(timeout)
                    if item is None:
                        continue  # the time is up: said above
                assert stream is not None  # an item came from it
                kind, obj = item
                if kind in ("ADDED", "MODIFIED"):
                    stream.in_view = True
                    if _newer(obj, effect.version):
                        record = self._decode(effect.name, _newest(stream, obj))
                        if effect.unless is not None and effect.unless(record):
                            skipped = record  # nothing for this waiter: wait on
                            continue
                        return record
                    continue  # a change we have seen already (our own write, say)
                if kind == "DELETED":
                    if not stream.filtered:
                        return None
                    # Deleted, or only out of view: its object is the version
                    # before, so what the object is now is unknown. Read it.
                    stream.in_view = False
                    if _newer(obj, effect.version):
                        return self.execute(Read(effect.name))
                    continue
                if kind == "END":  # the server ended the watch: watch again
                    skipped = self._skipped(stream, effect.name, skipped)
                    stream.close()
                    stream = None
                    continue
                if kind in ("ERROR", "BROKEN"):
                    stream.close()
                    stream = None
                    if kind == "BROKEN" and not _transient(obj):
                        raise obj  # refused (403, 401) or a lasting error: not ours to hide
                    if not effect.open:
                        return UNCHANGED
                    # 410 Gone (our version was compacted away), or the connection
                    # broke: what changed meanwhile is unknown, so read; a server
                    # that is really gone fails the read.
                    return self.execute(Read(effect.name))
        finally:
            if stream is not None:
                stream.wake_up()  # later changes are queued for the session's next wait
                if session is not None:
                    self._streams[session] = stream  # for the session's next wait
                else:
                    stream.close()

    def latest(self, session: object, record: Record | None) -> Record | None:
        """The newest version of the object that ``session``'s stream has received
        and nobody has read yet, if it is newer than ``record``; else ``record``.
        Sends no request: a holder that kept its watch open renews and releases
        from a current copy instead of meeting a conflict."""
        self._parked.pop(session, None)
        stream = self._streams.get(session)
        if stream is None or record is None:
            return record
        newest: Any = None
        version = record.version
        while (item := stream.poll()) is not None:
            kind, obj = item
            if kind in ("ADDED", "MODIFIED"):
                stream.in_view = True
            if kind in ("ADDED", "MODIFIED") and _newer(obj, version):
                newest = obj
                version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
            elif kind == "DELETED" and stream.filtered:
                stream.in_view = False  # out of view (or deleted): the copy may be stale
            elif kind not in ("ADDED", "MODIFIED"):  # deleted, ended or broken: stop using it
                self.end(session)
                break
        return record if newest is None else self._decode(record.name, newest)

    def _sleep_through(self, stream: Subscriber, effect: Watch) -> None:
        """Let the stream's reader keep the changes that ``effect.unless`` marks as
        nothing to this waiter instead of waking it (the newest is kept)."""
        unless = effect.unless
        if unless is None:
            return
        name, version = effect.name, effect.version

        def nothing(obj: Any) -> bool:
            return _newer(obj, version) and unless(self._decode(name, obj))

        stream.sleep_through(nothing)

    def _skipped(
        self, stream: Subscriber | None, name: str, skipped: Record | None
    ) -> Record | None:
        """The newest version slept through: the one the stream's reader kept, if
        any (it came after those this wait took from the queue), else ``skipped``."""
        kept = None if stream is None else stream.wake_up()
        return skipped if kept is None else self._decode(name, kept)

    def _watched(self, name: str, session: object, own: Subscriber | None = None) -> bool:
        """Whether another session of this locker waits on the lock ``name`` (or
        did, and is not over), or a watch of this locker follows it for one
        (other than the feed of the session's own stream ``own``)."""
        if any(n == name and s is not session for s, n in self._waiting.items()):
            return True
        mine = None if own is None else own.feed
        return any(n == name and not f.done and f is not mine for (n, _), f in self._feeds.items())

    def _subscribe(self, name: str, version: str | None, view: str | None) -> Subscriber:
        """A stream of the object's changes after ``version``: from the lock's shared
        watch if it has one that misses nothing for this waiter, else a new one.
        With ``view`` (an instance ID), only the versions labelled for it."""
        key = (name, view)
        for old in [k for k, f in self._feeds.items() if f.done]:
            del self._feeds[old]  # ended (its last waiter left): not kept per instance
        feed = self._feeds.get(key)
        if feed is not None and feed.covers(version):
            return feed.subscribe()
        feed = Feed(version, filtered=view is not None)
        events = self.api.watch(
            self.object_name(name),
            version,
            WATCH_LIFETIME,
            lock=name,
            opened=feed.opened,
            label=None if view is None else view_label(view),
        )
        self._feeds[key] = feed
        # Subscribed before the feed reads: an event it receives at once (a
        # DELETED, which the feed does not keep for later subscribers) is not lost.
        subscriber = feed.subscribe()
        feed.start(events)
        return subscriber

    def _decode(self, name: str, obj: Any) -> Record:
        """Decode a watched object once for all the waiters that receive it (also
        from the sync watch's reading thread: the cache is one tuple, swapped whole)."""
        last = self._decoded
        if last is not None and last[0] is obj:
            return last[1]
        record = self.decode(name, obj)
        self._decoded = (obj, record)
        return record

    def park(self, session: object) -> None:
        """The lock that waited with ``session`` was released: keep its watch open
        for :data:`LINGER` seconds, for the lock's next acquire."""
        self._sweep()
        if session in self._streams:
            self._parked[session] = self.api.clock.monotonic() + LINGER
        else:
            self._waiting.pop(session, None)  # nothing open to keep: it is over

    def _sweep(self) -> None:
        """Close the parked watches that were not used in time."""
        now = self.api.clock.monotonic()
        for session, until in list(self._parked.items()):
            if until <= now:
                self.end(session)

    def end(self, session: object) -> None:
        """The operation that waited with ``session`` is over: stop its watch."""
        self._parked.pop(session, None)
        self._waiting.pop(session, None)
        stream = self._streams.pop(session, None)
        if stream is not None:
            stream.close()

    def close(self) -> None:
        for session in list(self._streams):
            self.end(session)
