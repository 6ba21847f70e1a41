"""Leader election on an :class:`~lockheed.AsyncLock`, for asyncio.

The elector campaigns by acquiring its lock (waiting on a watch of the lock's
one object, so a released leadership is taken at once), leads while it holds
the lock (renewed every retry period by the event loop's renewal task) and
resigns by releasing it. Decisions (timing, when to report what) are in
:mod:`lockheed._election`.

Failure semantics:

* Leadership is lost when the lock is: taken over (a forced acquire), its
  object deleted, or no renewal succeeded for the renew deadline. At that
  moment ``on_stopped_leading`` is called (on the event loop, from the
  renewal task) and the leader's block or work is cancelled; ``leading()``
  raises :class:`~lockheed.LockLost`; ``run()`` campaigns again, or with
  ``once=True`` raises the :class:`~lockheed.LockLost`.
* Leadership is released whenever the leader's block ends, normally, by an
  exception, or by cancellation: the release is shielded from cancellation,
  so a cancelled leader (for example on SIGTERM) still hands over at once.
  A release that fails is reported as an event and the lease runs out by
  itself; a block that ended normally after the lock was lost raises
  :class:`~lockheed.LockLost`.
* A campaign retries errors from an unreachable API server (and endless write
  conflicts) after the retry period; other errors (permissions, a malformed
  lock object) end it and propagate.
* Callbacks are plain functions called on the event loop; one that raises is
  reported as an event of the lock and does not stop the election.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

from .._election import Callbacks, Election, Notice, Timing, configure, retryable
from .._errors import LockError, LockLost
from .._events import EventCode
from .lock import AsyncLock

__all__ = ["AsyncLeaderElector"]

T = TypeVar("T")


class AsyncLeaderElector:
    """Elects one leader among the holders of ``lock``'s identity (its instance ID).

    ``lease_duration``, ``renew_deadline`` and ``retry_period`` (seconds or
    timedeltas) are client-go's, with client-go's rules; they set the lock's
    duration, renew interval and loss deadline (see :mod:`lockheed._election`).
    ``on_new_leader(identity)`` is called whenever another leader is seen
    (while campaigning, from the acquire's watch; no extra request) and when
    this elector starts leading.
    """

    def __init__(
        self,
        lock: AsyncLock,
        *,
        lease_duration: float | timedelta = 15.0,
        renew_deadline: float | timedelta = 10.0,
        retry_period: float | timedelta = 2.0,
        on_started_leading: Callable[[], Any] | None = None,
        on_stopped_leading: Callable[[], Any] | None = None,
        on_new_leader: Callable[[str], Any] | None = None,
    ):
        if not isinstance(lock, AsyncLock):
            raise TypeError(
                f"AsyncLeaderElector takes an AsyncLock, not {type(lock).__name__} "
                "(LeaderElector takes a Lock)"
            )
        self.timing = Timing.of(lease_duration, renew_deadline, retry_period)
        configure(lock, self.timing)
        self.lock = lock
        self._callbacks = Callbacks(on_started_leading, on_stopped_leading, on_new_leader)
        self._election = Election(lock.instance_id)
        self._stopping = False
        self._runs: set[asyncio.Task[Any]] = set()
        lock.on_lost(self._lost)
        lock._on_wait = self._observed

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.lock!r}, leader={self.leader!r})"

    @property
    def identity(self) -> str:
        return self.lock.instance_id

    @property
    def leader(self) -> str | None:
        """The leader's identity as last observed; None when none is known."""
        return self._election.leader

    @property
    def is_leader(self) -> bool:
        """True while this elector leads (and its lock is held)."""
        return self._election.leading and self.lock.held

    # ------------------------------------------------------------ bookkeeping

    def _notify(self, notices: list[Notice]) -> None:
        self._callbacks.deliver(notices, self._report)

    def _report(self, what: str, error: Exception) -> None:
        self.lock._event(EventCode.DEBUG, f"{what} callback failed: {error!r}", error)

    def _observed(self, holder: str | None) -> None:
        self._notify(self._election.observed(holder))

    def _lost(self, error: LockLost) -> None:
        self._notify(self._election.ended(error.holder))

    async def _campaign(self) -> None:
        while True:
            try:
                await self.lock.acquire()
            except LockError as exc:
                if not retryable(exc):
                    raise
                await asyncio.sleep(self.timing.retry_period)
                continue
            self._notify(self._election.won())
            return

    async def _resign(self) -> None:
        """Release (shielded); a failure other than a loss is only reported."""
        try:
            await self.lock.release()
        except LockLost:
            raise
        except LockError:
            pass  # reported as an event by release(); the lease runs out by itself
        finally:
            self._notify(self._election.ended())

    # ------------------------------------------------------------ leading

    @contextlib.asynccontextmanager
    async def leading(self) -> AsyncIterator[AsyncLock]:
        """``async with elector.leading():`` campaigns, then runs the block as leader.

        The block is cancelled the moment leadership is lost and then raises
        :class:`~lockheed.LockLost`; leadership is released when it ends.
        """
        await self._campaign()
        try:
            async with self.lock.guard():
                yield self.lock
        except BaseException:
            with contextlib.suppress(LockError):
                await self._resign()
            raise
        await self._resign()

    async def run(
        self, work: Callable[[], Awaitable[T]] | None = None, *, once: bool = False
    ) -> T | None:
        """Lead and run ``await work()``; return its result once it is done as leader.

        Each time leadership is lost the work is cancelled and the elector
        campaigns again to run it anew (``once=True``: raise the
        :class:`~lockheed.LockLost` instead). Without ``work``, lead until
        :meth:`stop` or cancellation. After :meth:`stop`, returns None.
        """
        task = asyncio.current_task()
        assert task is not None
        self._runs.add(task)
        try:
            return await self._terms(work, once)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            if sys.version_info >= (3, 11):
                task.uncancel()
            return None
        finally:
            self._runs.discard(task)

    async def _terms(self, work: Callable[[], Awaitable[T]] | None, once: bool) -> T | None:
        while not self._stopping:
            done = False
            try:
                async with self.leading():
                    if work is None:
                        await _forever()
                    result = await work()
                    done = True
                return result
            except LockLost:
                if done or once or self.lock.lost is None:
                    raise  # a loss after the work was done, or not our lock's
        return None

    def stop(self) -> None:
        """Make :meth:`run` cancel its work, release leadership and return None.

        Call it on the event loop, e.g. ``loop.add_signal_handler(SIGTERM,
        elector.stop)``. A stopped elector stays stopped.
        """
        self._stopping = True
        for task in list(self._runs):
            task.cancel()


async def _forever() -> NoReturn:
    await asyncio.get_running_loop().create_future()
    raise AssertionError("a future nobody resolves was resolved")
