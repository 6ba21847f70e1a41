"""A watch stream read in the background, so a waiter can wait for change after
change of one object on a single request.

The stream's events are queued as they arrive; :meth:`WatchStream.next` waits
for the next one with a timeout of the caller's choosing. The stream ends
with an ``END`` item when the server closes it, or a ``BROKEN`` item (with
the error) when it fails: the connection broke, or the server refused it;
:meth:`close` stops it at once. A subscriber's filter that raises lets the
change through to the waiter, which decodes it itself and meets the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

__all__ = ["Feed", "Subscriber", "WatchStream"]


class WatchStream:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._held: tuple[str, Any] | None = None  # an event handed back (unget)

    def start(self, events: AsyncGenerator[tuple[str, Any], None]) -> WatchStream:
        self._task = asyncio.get_running_loop().create_task(
            self._pump(events), name="lockheed-watch"
        )
        return self

    def opened(self, response: Any) -> None:
        """The streaming response is open (nothing to keep: a task is cancelled)."""

    async def _pump(self, events: AsyncGenerator[tuple[str, Any], None]) -> None:
        self._queue.put_nowait(await _read(events, self._queue.put_nowait))

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
        except asyncio.QueueEmpty:
            return None

    async def next(self, timeout: float | None) -> tuple[str, Any] | None:
        """The next event, or None when ``timeout`` seconds pass first."""
        if self._held is not None:
            return self.poll()
        return await _get(self._queue, timeout)

    async def close(self) -> None:
        if self._task is None:
            return
        await _stop(self._task)


class Feed:
    """One watch stream of one object, shared by every waiting operation of one
    locker on that object: each :class:`Subscriber` receives the events from
    when it subscribed, the newest version received before that first. So many
    tasks waiting on one lock cost one watch request, and each event is read
    and parsed once.

    A feed opened at version ``since`` that has received no version yet only
    serves subscribers that have seen ``since`` or later (:meth:`covers`);
    once it has received one, it serves anybody (the newest version it holds
    is as current as the stream). It ends when the server ends the stream, or
    when its last subscriber leaves.
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
        self._task: asyncio.Task[None] | None = None

    def start(self, events: AsyncGenerator[tuple[str, Any], None]) -> Feed:
        self._task = asyncio.get_running_loop().create_task(
            self._pump(events), name="lockheed-watch"
        )
        return self

    def opened(self, response: Any) -> None:
        """The streaming response is open (nothing to keep: a task is cancelled)."""

    async def _pump(self, events: AsyncGenerator[tuple[str, Any], None]) -> None:
        self._finish(await _read(events, self._deliver))

    def _deliver(self, item: tuple[str, Any]) -> None:
        if item[0] in ("ADDED", "MODIFIED"):
            self.latest = item[1]
        elif item[0] == "DELETED":  # deleted, or out of a filtered view: unknown now
            self.latest = None
        for sub in list(self._subs):
            sub.put(item)

    def _finish(self, item: tuple[str, Any]) -> None:
        self.done = True
        for sub in list(self._subs):
            sub.put(item)

    def covers(self, version: str | None) -> bool:
        """Whether a waiter that has seen ``version`` misses nothing by subscribing."""
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
        self._subs.add(sub)
        if self.latest is not None:
            sub.put(("MODIFIED", self.latest))
        return sub

    async def leave(self, sub: Subscriber) -> None:
        self._subs.discard(sub)
        if not self._subs:
            self.done = True
            if self._task is not None:
                await _stop(self._task)


class Subscriber:
    """One waiting operation's view of a :class:`Feed` (a :class:`WatchStream`'s interface).

    While a filter is set (:meth:`sleep_through`), the feed keeps the changes it
    matches instead of queueing them, so the waiting task is not woken for a
    change that is nothing to it; :meth:`wake_up` ends that and returns the
    newest change kept.
    """

    def __init__(self, feed: Feed) -> None:
        self._feed = feed
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
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
        self._queue.put_nowait(item)

    def sleep_through(self, nothing: Callable[[Any], bool]) -> None:
        """Keep, without waking the waiter, the changes for which ``nothing(obj)`` is true."""
        self._nothing, self._kept = nothing, None

    def wake_up(self) -> Any:
        """Queue every change from now on; return the newest one kept (None: none)."""
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
        except asyncio.QueueEmpty:
            return None

    async def next(self, timeout: float | None) -> tuple[str, Any] | None:
        if self._held is not None:
            return self.poll()
        return await _get(self._queue, timeout)

    async def close(self) -> None:
        await self._feed.leave(self)


async def _read(
    events: AsyncGenerator[tuple[str, Any], None], deliver: Callable[[tuple[str, Any]], None]
) -> tuple[str, Any]:
    """Read a watch's ``events``, handing each to ``deliver``, until the stream
    ends: return the last item to hand on, ``END`` (the server ended it) or
    ``BROKEN`` with the error (broken, refused (403), or a bad answer)."""
    try:
        async with aclosing(events):
            async for item in events:
                deliver(item)
    except Exception as exc:
        return ("BROKEN", exc)
    return ("END", None)


async def _stop(task: asyncio.Task[Any]) -> None:
    """Cancel a reader ``task`` and wait until it has ended. Its end (cancelled,
    or an error as it stopped) is nothing to the caller; a cancellation of the
    caller meanwhile is, and propagates (``suppress(CancelledError)`` around
    ``await task`` would swallow it, and a cancelled acquire would wait on)."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved, so that asyncio does not report it


async def _get(
    queue: asyncio.Queue[tuple[str, Any]], timeout: float | None
) -> tuple[str, Any] | None:
    """The next item of ``queue``, or None after ``timeout`` seconds. Not
    ``asyncio.wait_for``: before Python 3.12 it can swallow a cancellation that
    comes as the item arrives, and a cancelled waiter then waits on."""
    getter = asyncio.ensure_future(queue.get())
    try:
        done, _ = await asyncio.wait({getter}, timeout=timeout)
    finally:
        if not getter.done():
            getter.cancel()
    item: tuple[str, Any] | None = getter.result() if getter in done else None
    return item
