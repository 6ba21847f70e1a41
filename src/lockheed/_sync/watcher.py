"""A watch stream read by a background thread, so a waiter can wait for change
after change of one object on a single request (the sync twin of
:mod:`lockheed._async.watcher`, written by hand: it needs a thread).

:meth:`WatchStream.close` shuts the stream's socket down, which ends the
reading thread's blocked read at once; the thread is a daemon. A subscriber's
filter runs in the reading thread; one that raises lets the change through to
the waiter, which decodes it itself and meets the error.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from collections.abc import Callable, Generator
from contextlib import closing
from typing import Any

__all__ = ["Feed", "Subscriber", "WatchStream"]


class WatchStream:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._response: Any = None
        self._closed = threading.Event()
        self._held: tuple[str, Any] | None = None  # an event handed back (unget)

    def start(self, events: Generator[tuple[str, Any], None, None]) -> WatchStream:
        thread = threading.Thread(
            target=self._pump, args=(events,), name="lockheed-watch", daemon=True
        )
        thread.start()
        return self

    def opened(self, response: Any) -> None:
        """Called from the reading thread with the streaming response, once open."""
        self._response = response
        if self._closed.is_set():
            _shutdown(response)

    def _pump(self, events: Generator[tuple[str, Any], None, None]) -> None:
        last = _read(events, self._queue.put, self._closed)
        if last is not None:
            self._queue.put(last)

    def unget(self, item: tuple[str, Any]) -> None:
        """Hand back the event just taken: the next ``poll`` or ``next`` returns it."""
        self._held = item

    def poll(self) -> tuple[str, Any] | None:
        """The next event if one has arrived, else None (never waits)."""
        if self._held is not None:
            item, self._held = self._held, None
            return item
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def next(self, timeout: float | None) -> tuple[str, Any] | None:
        """The next event, or None when ``timeout`` seconds pass first."""
        if self._held is not None:
            return self.poll()
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._closed.set()
        if self._response is not None:
            _shutdown(self._response)


class Feed:
    """One watch stream of one object, shared by every waiting operation of one
    locker on that object (the sync twin of :class:`lockheed._async.watcher.Feed`):
    each :class:`Subscriber` receives the events from when it subscribed, the
    newest version received before that first. It ends when the server ends
    the stream, or when its last subscriber leaves (its socket is shut down).
    """

    def __init__(self, since: str | None, filtered: bool = False) -> None:
        # filtered: a watch by a view label (lockheed._queue.view_labels), which
        # shows only the versions that label the waiter; its DELETED may mean
        # only that a version stopped labelling it, and carries the content of
        # the version before (with the new resourceVersion): never a state.
        self.since = since
        self.filtered = filtered
        self.latest: Any = None  # the newest ADDED or MODIFIED object received
        self.done = False
        self._subs: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._response: Any = None
        self._closed = threading.Event()

    def start(self, events: Generator[tuple[str, Any], None, None]) -> Feed:
        thread = threading.Thread(
            target=self._pump, args=(events,), name="lockheed-watch", daemon=True
        )
        thread.start()
        return self

    def opened(self, response: Any) -> None:
        """Called from the reading thread with the streaming response, once open."""
        self._response = response
        if self._closed.is_set():
            _shutdown(response)

    def _pump(self, events: Generator[tuple[str, Any], None, None]) -> None:
        last = _read(events, self._deliver, self._closed)
        if last is not None:
            self._finish(last)

    def _deliver(self, item: tuple[str, Any]) -> None:
        with self._lock:
            if item[0] in ("ADDED", "MODIFIED"):
                self.latest = item[1]
            elif item[0] == "DELETED":  # deleted, or out of a filtered view: unknown now
                self.latest = None
            for sub in self._subs:
                sub.put(item)

    def _finish(self, item: tuple[str, Any]) -> None:
        with self._lock:
            self.done = True
            for sub in self._subs:
                sub.put(item)

    def covers(self, version: str | None) -> bool:
        """Whether a waiter that has seen ``version`` misses nothing by subscribing."""
        with self._lock:
            if self.done or not self._subs:
                return False
            if self.latest is not None:
                return True
        if version is None or self.since is None:
            return False
        try:
            return int(version) >= int(self.since)
        except ValueError:
            return version == self.since

    def subscribe(self) -> Subscriber:
        sub = Subscriber(self)
        with self._lock:
            self._subs.add(sub)
            if self.latest is not None:
                sub.put(("MODIFIED", self.latest))
        return sub

    def leave(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs.discard(sub)
            if self._subs:
                return
            self.done = True
        self._closed.set()
        if self._response is not None:
            _shutdown(self._response)


class Subscriber:
    """One waiting operation's view of a :class:`Feed` (a :class:`WatchStream`'s interface).

    While a filter is set (:meth:`sleep_through`), the feed's reading thread keeps
    the changes it matches instead of queueing them, so the waiting thread is
    not woken for a change that is nothing to it; :meth:`wake_up` ends that and
    returns the newest change kept.
    """

    def __init__(self, feed: Feed) -> None:
        self._feed = feed
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._held: tuple[str, Any] | None = None
        self._nothing: Callable[[Any], bool] | None = None
        self._kept: Any = None
        # Whether the feed's watch shows every change (a watch by view label
        # shows only those that label the waiter: see lockheed._queue.view_labels),
        # and, if not, whether the last event said the object labels it.
        self.filtered = feed.filtered
        self.in_view = False

    @property
    def feed(self) -> Feed:
        """The stream this subscriber reads."""
        return self._feed

    def put(self, item: tuple[str, Any]) -> None:
        """Called by the feed, under its lock."""
        if item[0] in ("ADDED", "MODIFIED"):
            self.in_view = True  # (a DELETED is queued: the waiter marks it out of view)
        nothing = self._nothing
        if nothing is not None and item[0] in ("ADDED", "MODIFIED"):
            try:
                if nothing(item[1]):
                    self._kept = item[1]
                    return
            except Exception:  # noqa: S110 - the waiter decodes it itself, and meets the error
                pass
        self._queue.put(item)

    def sleep_through(self, nothing: Callable[[Any], bool]) -> None:
        """Keep, without waking the waiter, the changes for which ``nothing(obj)`` is true."""
        with self._feed._lock:
            self._nothing, self._kept = nothing, None

    def wake_up(self) -> Any:
        """Queue every change from now on; return the newest one kept (None: none)."""
        with self._feed._lock:
            kept, self._kept, self._nothing = self._kept, None, None
        return kept

    def unget(self, item: tuple[str, Any]) -> None:
        self._held = item

    def poll(self) -> tuple[str, Any] | None:
        if self._held is not None:
            item, self._held = self._held, None
            return item
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def next(self, timeout: float | None) -> tuple[str, Any] | None:
        if self._held is not None:
            return self.poll()
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._feed.leave(self)


def _read(
    events: Generator[tuple[str, Any], None, None],
    deliver: Callable[[tuple[str, Any]], None],
    closed: threading.Event,
) -> tuple[str, Any] | None:
    """Read a watch's ``events``, handing each to ``deliver``, until the stream
    ends: return the last item to hand on, ``END`` (the server ended it) or
    ``BROKEN`` with the error (a broken or shut-down connection), or None once
    ``closed`` is set (nobody is listening any more)."""
    try:
        with closing(events):
            for item in events:
                if closed.is_set():
                    return None
                deliver(item)
    except Exception as exc:
        return ("BROKEN", exc)
    return ("END", None)


def _shutdown(response: Any) -> None:
    if (shutdown := getattr(response, "shutdown", None)) is not None:
        shutdown()  # the lean client's stream (lockheed._sync.http1.Stream)
        return
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
