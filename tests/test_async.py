"""What only the asyncio API has: cancellation safety, the lost-lock guard and
awaitable, and one renewal task per event loop; on both lockers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from lockheed import AsyncLock, LockLost, tags_contain
from lockheed._core import Effect, Read, Replace
from lockheed._state import Record
from support import Api, LoopThread


@pytest.fixture
def aapi(loop_thread: LoopThread) -> Any:
    api = Api("async", loop_thread)
    del loop_thread.blocking[:]
    yield api
    api.close()
    assert not loop_thread.blocking, f"a blocking call on the event loop: {loop_thread.blocking}"


Run = Callable[[Callable[[], Coroutine[Any, Any, Any]]], Any]


@pytest.fixture
def run(loop_thread: LoopThread) -> Run:
    def go(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        return loop_thread.run(make(), timeout=60)

    return go


class Pausing:
    """An async locker that stops forever at its ``at``-th effect, ``before`` the
    request or ``after`` it reached the store, so a test can cancel right there."""

    def __init__(self, inner: Any, at: int, after: bool):
        self.inner, self.at, self.after = inner, at, after
        self.prefix, self.clock = inner.prefix, inner.clock
        self.count = 0
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()  # never set unless a test lets the request go on
        self.effects: list[Effect] = []

    def object_name(self, name: str) -> str:
        return str(self.inner.object_name(name))

    async def _pause(self) -> None:
        self.paused.set()
        await self.resume.wait()

    async def execute(self, effect: Effect) -> Any:
        self.count += 1
        self.effects.append(effect)
        if self.count == self.at and not self.after:
            await self._pause()
        result = await self.inner.execute(effect)
        if self.count == self.at and self.after:
            await self._pause()
        return result

    async def list_records(self) -> list[Record]:
        return list(await self.inner.list_records())


async def our_lease(locker: Any, name: str, instance: str) -> bool:
    record = await locker.execute(Read(name))
    return record is not None and record.state is not None and instance in record.state.leases


async def cancel_at_pause(pausing: Pausing, coro: Coroutine[Any, Any, Any]) -> bool:
    """Run ``coro`` until the locker pauses, cancel it; True if it paused."""
    task = asyncio.ensure_future(coro)
    paused = asyncio.ensure_future(pausing.paused.wait())
    # One of the two always comes (the acquire pauses or ends), so no timeout of
    # our own: on a slow host a timeout here would pass for "never paused".
    await asyncio.wait({task, paused}, return_when=asyncio.FIRST_COMPLETED)
    if not pausing.paused.is_set():
        paused.cancel()
        await task
        return False
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return True


@pytest.mark.parametrize("after", [False, True], ids=["before-request", "after-request"])
@pytest.mark.parametrize("contended", [False, True], ids=["free", "contended"])
def test_cancelled_acquire_leaves_no_lease(
    locker: Any, aapi: Api, run: Run, after: bool, contended: bool
) -> None:
    inner = aapi.twin(locker)

    async def scenario() -> int:
        points = 0
        for at in range(1, 6):
            name = f"cancel-acquire-{at}"
            if contended:  # a holder that lets go while we wait on the watch
                holder = AsyncLock(name, inner).with_duration(30)
                await holder.acquire()
                asyncio.get_running_loop().call_later(0.2, asyncio.ensure_future, holder.release())
            pausing = Pausing(inner, at, after)
            lock = AsyncLock(name, pausing).with_duration(30)
            if not await cancel_at_pause(pausing, lock.acquire(timeout=10)):
                pausing.at = -1
                await lock.release()
                break
            points += 1
            assert not lock.held
            assert not await our_lease(inner, name, lock.instance_id), (
                f"a lease was left behind after cancelling at effect {at} "
                f"({type(pausing.effects[-1]).__name__}, after={after})"
            )
        return points

    points = run(scenario)
    assert points >= 2  # read and write at least; a watch too when contended


@pytest.mark.parametrize("after", [False, True], ids=["before-request", "after-request"])
def test_cancelled_release_still_completes(locker: Any, aapi: Api, run: Run, after: bool) -> None:
    """Cancel a release while its write is stalled: the write still happens, and the
    caller sees its cancellation only once the lease is gone."""
    inner = aapi.twin(locker)

    async def scenario() -> None:
        pausing = Pausing(inner, 10_000, after)
        lock = AsyncLock("cancel-release", pausing).with_duration(30)
        await lock.acquire()
        pausing.at = pausing.count + 1
        release = asyncio.ensure_future(lock.release())
        await asyncio.wait_for(pausing.paused.wait(), 10)
        release.cancel()
        await asyncio.sleep(0.05)
        assert not release.done(), "release gave up its write when cancelled"
        pausing.resume.set()
        with pytest.raises(asyncio.CancelledError):
            await release
        assert isinstance(pausing.effects[-1], Replace)
        assert not lock.held
        assert not await our_lease(inner, "cancel-release", lock.instance_id)

    run(scenario)


def test_release_is_shielded_from_cancellation(locker: Any, aapi: Api, run: Run) -> None:
    inner = aapi.twin(locker)

    async def scenario() -> None:
        lock = AsyncLock("shielded", inner).with_duration(30)
        await lock.acquire()
        release = asyncio.ensure_future(lock.release())
        await asyncio.sleep(0)  # the release has started its request
        release.cancel()
        with pytest.raises(asyncio.CancelledError):
            await release
        assert not lock.held
        assert not await our_lease(inner, "shielded", lock.instance_id)

    run(scenario)


@pytest.mark.parametrize("after", [False, True], ids=["before-request", "after-request"])
def test_cancelled_renew_keeps_the_lock(locker: Any, aapi: Api, run: Run, after: bool) -> None:
    inner = aapi.twin(locker)

    async def scenario() -> None:
        pausing = Pausing(inner, 10_000, after)
        lock = AsyncLock("cancel-renew", pausing).with_duration(30)
        await lock.acquire()
        pausing.at = pausing.count + 1
        assert await cancel_at_pause(pausing, lock.renew())
        assert isinstance(pausing.effects[-1], Replace)
        assert lock.held and await our_lease(inner, "cancel-renew", lock.instance_id)
        pausing.at = -1
        await lock.renew()  # the next renewal re-reads on conflict and succeeds
        await lock.release()
        assert not await our_lease(inner, "cancel-renew", lock.instance_id)

    run(scenario)


def test_guard_cancels_the_block_when_the_lock_is_lost(locker: Any, aapi: Api, run: Run) -> None:
    inner = aapi.twin(locker)

    async def scenario() -> None:
        lock = AsyncLock("guarded", inner).with_duration(5).with_renew_interval(0.2)
        await lock.with_tags(["victim"]).acquire()
        reached = asyncio.Event()

        async def work() -> None:
            async with lock.guard():
                reached.set()
                await asyncio.sleep(60)  # a long job that must not outlive the lock

        job = asyncio.ensure_future(work())
        await reached.wait()
        thief = AsyncLock("guarded", inner).with_duration(30).with_force(tags_contain("victim"))
        await thief.acquire(timeout=5)
        with pytest.raises(LockLost):
            await asyncio.wait_for(job, 10)
        lost = await asyncio.wait_for(lock.wait_lost(), 1)
        assert lost.holder == thief.instance_id
        await thief.release()

    run(scenario)


def test_guard_leaves_other_cancellations_alone(locker: Any, aapi: Api, run: Run) -> None:
    inner = aapi.twin(locker)

    async def scenario() -> None:
        lock = AsyncLock("guard-other", inner).with_duration(30)
        await lock.acquire()
        reached = asyncio.Event()

        async def work() -> None:
            async with lock.guard():
                reached.set()
                await asyncio.sleep(60)

        job = asyncio.ensure_future(work())
        await reached.wait()
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert lock.held
        await lock.release()

    run(scenario)


def test_one_renewal_task_per_loop(locker: Any, aapi: Api, run: Run) -> None:
    inner = aapi.twin(locker)

    async def scenario() -> None:
        locks = [
            AsyncLock(f"many-{i}", inner).with_duration(5).with_renew_interval(0.1)
            for i in range(5)
        ]
        for lock in locks:
            await lock.acquire()
        renewed = asyncio.Event()
        seen: set[str] = set()

        def on_event(event: Any) -> None:
            if event.code == 211:
                seen.add(event.lock)
                if len(seen) == len(locks):
                    renewed.set()

        for lock in locks:
            lock.with_event_handler(on_event)
        await asyncio.wait_for(renewed.wait(), 10)
        names = [t.get_name() for t in asyncio.all_tasks()]
        assert names.count("lockheed-renewer") == 1
        for lock in locks:
            await lock.release()

    run(scenario)


def test_tasks_exclude_each_other(locker: Any, aapi: Api, run: Run) -> None:
    inner = aapi.twin(locker)
    log: list[tuple[int, str, str]] = []

    async def scenario() -> None:
        inside: list[str] = []

        async def worker(i: int) -> None:
            lock = AsyncLock("tasks", inner).with_duration(30)
            for _ in range(10):
                async with lock:
                    inside.append(lock.instance_id)
                    assert len(inside) == 1, "two tasks inside at once"
                    log.append((lock.fencing_token or 0, "in", lock.instance_id))
                    await asyncio.sleep(0)
                    inside.remove(lock.instance_id)

        await asyncio.gather(*(worker(i) for i in range(4)))

    run(scenario)
    tokens = [t for t, _, _ in log]
    assert len(tokens) == 40 and tokens == sorted(tokens) and len(set(tokens)) == 40


def test_wait_lost_waits_again_after_a_new_acquire(locker: Any, aapi: Api, run: Run) -> None:
    inner = aapi.twin(locker)

    async def scenario() -> None:
        lock = AsyncLock("again", inner).with_duration(30).with_tags(["x"])
        await lock.acquire()
        thief = AsyncLock("again", inner).with_duration(30).with_force(tags_contain("x"))
        await thief.acquire()
        with pytest.raises(LockLost):
            await lock.renew()
        assert (await asyncio.wait_for(lock.wait_lost(), 1)).holder == thief.instance_id
        with pytest.raises(LockLost):
            await lock.release()
        await thief.release()
        await lock.acquire()  # held again: no loss to report
        waiting = asyncio.ensure_future(lock.wait_lost())
        done, _ = await asyncio.wait({waiting}, timeout=0.2)
        assert not done
        waiting.cancel()
        await lock.release()

    run(scenario)
