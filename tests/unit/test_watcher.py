"""A watch feed's subscriber that sleeps through changes (both APIs): the
reader keeps the changes its filter marks as nothing to the waiter instead of
waking it, and hands the newest of them over when the wait ends; every other
change, and every change after the wait, is queued as before. The events come
from a generator the test feeds (no server)."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import types
from collections.abc import AsyncGenerator, Generator
from typing import Any

from lockheed._async import watcher as async_watcher
from lockheed._sync import watcher as sync_watcher

WAIT = 30.0


def change(version: int, nothing: bool) -> tuple[str, Any]:
    return "MODIFIED", {"metadata": {"resourceVersion": str(version)}, "nothing": nothing}


def version(item: tuple[str, Any] | None) -> str:
    assert item is not None
    return str(item[1]["metadata"]["resourceVersion"])


def test_sync_subscriber_keeps_what_is_nothing_to_it() -> None:
    source: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
    delivered = threading.Event()

    def events() -> Generator[tuple[str, Any], None, None]:
        while (item := source.get()) is not None:
            yield item

    feed = sync_watcher.Feed("1")
    sub = feed.subscribe()
    feed.start(events())
    sub.sleep_through(lambda obj: bool(obj["nothing"]))
    for item in (change(2, True), change(3, True), change(4, False)):
        source.put(item)
    assert version(sub.next(WAIT)) == "4"  # the first change that is something to it
    assert sub.poll() is None  # 2 and 3 were never queued
    assert sub.wake_up()["metadata"]["resourceVersion"] == "3"  # the newest kept
    assert sub.wake_up() is None

    # Awake again: everything is queued, whatever the filter said before.
    original = sub.put

    def put(item: tuple[str, Any]) -> None:
        original(item)
        delivered.set()

    sub.put = put  # type: ignore[method-assign]
    source.put(change(5, True))
    assert delivered.wait(WAIT)
    assert version(sub.poll()) == "5"

    # A kept change is handed over when the wait's time is up (nothing else came).
    sub.sleep_through(lambda obj: bool(obj["nothing"]))
    delivered.clear()
    source.put(change(6, True))
    assert delivered.wait(WAIT)
    assert sub.poll() is None
    assert sub.wake_up()["metadata"]["resourceVersion"] == "6"
    source.put(None)
    assert sub.next(WAIT) == ("END", None)
    sub.close()


def test_async_subscriber_keeps_what_is_nothing_to_it() -> None:
    async def main() -> None:
        source: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()

        async def events() -> AsyncGenerator[tuple[str, Any], None]:
            while (item := await source.get()) is not None:
                yield item

        feed = async_watcher.Feed("1")
        sub = feed.subscribe()
        feed.start(events())
        sub.sleep_through(lambda obj: bool(obj["nothing"]))
        for item in (change(2, True), change(3, True), change(4, False)):
            source.put_nowait(item)
        assert version(await sub.next(WAIT)) == "4"
        assert sub.poll() is None
        assert sub.wake_up()["metadata"]["resourceVersion"] == "3"
        source.put_nowait(change(5, True))
        assert version(await sub.next(WAIT)) == "5"  # awake: queued whatever it is
        source.put_nowait(None)
        assert await sub.next(WAIT) == ("END", None)
        await sub.close()

    asyncio.run(main())


def test_a_filter_that_fails_lets_the_change_through() -> None:
    """The waiter decodes the change itself and meets the error there."""
    feed = sync_watcher.Feed("1")
    sub = feed.subscribe()

    def broken(obj: Any) -> bool:
        raise ValueError("undecodable")

    sub.sleep_through(broken)
    sub.put(change(2, True))
    assert version(sub.poll()) == "2"
    assert sub.wake_up() is None


def test_a_cancellation_while_a_watch_closes_is_not_lost() -> None:
    """Closing a watch waits for its reader to stop (here: a stream that takes
    its time to close). A cancellation of the closing task meanwhile must end
    that task; swallowed, a cancelled acquire would wait on in line."""

    async def main() -> None:
        started = asyncio.Event()
        closing = asyncio.Event()
        release = asyncio.Event()

        async def events() -> AsyncGenerator[tuple[str, Any], None]:
            try:
                started.set()
                await asyncio.Event().wait()  # no change ever comes
                yield change(2, False)
            finally:
                closing.set()
                await release.wait()  # the connection closes slowly

        async def close_stream() -> None:
            stream = async_watcher.WatchStream().start(events())
            await started.wait()
            await stream.close()

        async def leave_feed() -> None:
            feed = async_watcher.Feed("1")
            sub = feed.subscribe()
            feed.start(events())
            await started.wait()
            await sub.close()

        for close in (close_stream, leave_feed):
            started.clear()
            closing.clear()
            release.clear()
            task = asyncio.ensure_future(close())
            await asyncio.wait_for(closing.wait(), WAIT)
            task.cancel()
            release.set()
            outcome = (await asyncio.gather(task, return_exceptions=True))[0]
            assert isinstance(outcome, asyncio.CancelledError), (close.__name__, outcome)

    asyncio.run(main())


def test_an_event_at_the_start_of_a_new_watch_reaches_its_waiter(
    monkeypatch: Any,
) -> None:
    """A new watch's first event can arrive before the waiter that asked for it is
    subscribed (its reading thread is quick, the waiting thread slow). The feed
    keeps no DELETED for later subscribers, so the waiter must be subscribed
    before the feed reads: here the feed delivers its first event before
    ``start`` returns, and the wait must still see the deletion (before the
    fix it slept until its time was up and said UNCHANGED). A filtered watch's
    DELETED, a waiter leaving the view, takes the same path."""
    from lockheed._core import UNCHANGED, Watch
    from lockheed._sync.sessions import Watches

    end = threading.Event()

    class Api:
        clock = types.SimpleNamespace(monotonic=time.monotonic)

        def watch(self, *args: Any, **kwargs: Any) -> Generator[tuple[str, Any], None, None]:
            yield "DELETED", {"metadata": {"resourceVersion": "8"}}
            end.wait(WAIT)

    def start(feed: sync_watcher.Feed, events: Generator[tuple[str, Any], None, None]) -> Any:
        feed._deliver(next(events))  # the first event, before start returns
        return original(feed, events)

    original = sync_watcher.Feed.start
    monkeypatch.setattr(sync_watcher.Feed, "start", start)
    watches = Watches(Api(), str, lambda name, obj: obj, lambda effect: None)  # type: ignore[arg-type]
    try:
        result = watches.watch(Watch("lock", "7", time.monotonic() + 1.0))
        assert result is not UNCHANGED, "the deletion at the watch's start was lost"
        assert result is None
    finally:
        end.set()


def test_a_waiter_in_line_trades_a_watch_of_every_change_for_one_by_its_view() -> None:
    """A session whose first wait needed every change (its waiter was not yet in
    line) must not keep that watch once it waits in line by its view: a greedy
    worker that takes the lock again and again within the linger of its watch
    would otherwise read every change of a lock many wait on, for good."""
    from lockheed._core import Watch
    from lockheed._queue import view_label
    from lockheed._sync.sessions import Watches

    labels: list[str | None] = []
    end = threading.Event()

    class Api:
        clock = types.SimpleNamespace(monotonic=time.monotonic)

        def watch(
            self, name: str, since: str, *args: Any, label: str | None = None, **kwargs: Any
        ) -> Generator[tuple[str, Any], None, None]:
            labels.append(label)
            yield "MODIFIED", {"metadata": {"resourceVersion": str(int(since) + 1)}}
            end.wait(WAIT)

    watches = Watches(Api(), str, lambda name, obj: obj, lambda effect: None)  # type: ignore[arg-type]
    session = object()
    try:
        first = watches.watch(Watch("lock", "7", time.monotonic() + WAIT, session=session))
        assert version(("MODIFIED", first)) == "8"
        again = Watch("lock", "8", time.monotonic() + WAIT, session=session, view="me")
        assert version(("MODIFIED", watches.watch(again))) == "9"
        assert labels == [None, view_label("me")]
    finally:
        end.set()
        watches.end(session)
