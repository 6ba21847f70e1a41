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

__all__ = ["WatchStream"]


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
