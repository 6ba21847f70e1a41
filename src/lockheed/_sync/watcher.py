"""A watch stream read by a background thread, so a waiter can wait for change
after change of one object on a single request (the sync twin of
:mod:`lockheed._async.watcher`, written by hand: it needs a thread).

:meth:`WatchStream.close` shuts the stream's socket down, which ends the
reading thread's blocked read at once; the thread is a daemon.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from collections.abc import Generator
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
            self._shutdown()

    def _pump(self, events: Generator[tuple[str, Any], None, None]) -> None:
        try:
            with closing(events):
                for item in events:
                    if self._closed.is_set():
                        return
                    self._queue.put(item)
        except Exception as exc:  # a broken or shut-down connection
            self._queue.put(("BROKEN", exc))
            return
        self._queue.put(("END", None))

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
        self._shutdown()

    def _shutdown(self) -> None:
        response = self._response
        if response is None:
            return
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Feed:
    """One watch stream of one object, shared by every waiting operation of one
    locker on that object (the sync twin of :class:`lockheed._async.watcher.Feed`):
    each :class:`Subscriber` receives the events from when it subscribed, the
    newest version received before that first. It ends when the server ends
    the stream, or when its last subscriber leaves (its socket is shut down).
    """

    def __init__(self, since: str | None) -> None:
        self.since = since
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
        try:
            with closing(events):
                for item in events:
                    if self._closed.is_set():
                        return
                    with self._lock:
                        if item[0] in ("ADDED", "MODIFIED"):
                            self.latest = item[1]
                        for sub in self._subs:
                            sub.put(item)
        except Exception as exc:  # a broken or shut-down connection
            self._finish(("BROKEN", exc))
            return
        self._finish(("END", None))

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
    """One waiting operation's view of a :class:`Feed` (a :class:`WatchStream`'s interface)."""

    def __init__(self, feed: Feed) -> None:
        self._feed = feed
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._held: tuple[str, Any] | None = None

    def put(self, item: tuple[str, Any]) -> None:
        self._queue.put(item)

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


def _shutdown(response: Any) -> None:
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
