"""Joining and leaving the line together: the asyncio waiters of one locker on one lock.

Many tasks of one process that begin to wait on one lock at once (a worker
pool starting, a burst of jobs) would each write their own join at the same
version; all but one meet a conflict, and while they retry (pausing as a
crowd, reading again) the waiters that did get in line take turns ahead of
them. Likewise many waiters whose timeouts run out together each write their
leave. Instead, a locker writes its tasks' joins and leaves of one object one
write at a time: those that come while such a write is under way wait for it
and then go out together in the next write
(:func:`~lockheed._core.joins_write` puts each entry where its own join
would have, by the version at which it began to ask). One decided on the
version that the write under way replaced is written on that write's result,
which differs from it only by those joins and leaves, so it does not
conflict.

Only a write that just adds one waiter to a mutex's line
(:func:`~lockheed._core.join_entry`) or just removes one from a line
(:func:`~lockheed._core.leave_of`) is batched; every other write goes
straight out.

Failure semantics: every join or leave in a write gets that write's answer:
the new version (each then finds itself in line, or out of it), ``CONFLICT``
(each decides again on a newer version), None (the object was deleted) or
the write's error (its outcome is unknown: each reads and recognises its
entry). One decided on a version that a landed write has made stale gets
``CONFLICT`` without a request, as the server would answer. A task cancelled
while its join waits leaves the batch; if the write is under way, its
acquire's cleanup removes its entry as after any interrupted write. A batch
whose writer task is cancelled (the event loop closing) fails its joins and
leaves with a transient :class:`~lockheed.LockBackendError`, whose outcome
is unknown to them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .._core import CONFLICT, Create, Read, Replace, join_entry, joins_write, leave_of
from .._errors import LockBackendError
from .._kubecfg import bounded
from .._queue import Waiter
from .._state import Record

__all__ = ["Creates", "Joins", "Reads"]


@dataclass
class _Join:
    effect: Replace
    entry: Waiter | str  # the waiter joining, or the instance ID leaving
    done: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _rv(version: str) -> int:
    """A resourceVersion as a number (-1: not one; such joins are never batched
    with others, each is the newest of its own version)."""
    try:
        return int(version)
    except ValueError:
        return -1


class Joins:
    """The join and leave writes of one locker, batched per object; ``send``
    performs one write."""

    def __init__(self, send: Callable[[Replace], Awaitable[Any]]):
        self._send = send
        self._waiting: dict[str, list[_Join]] = {}  # joins not yet written, by lock name
        self._busy: set[str] = set()  # the locks with a join or leave under way

    async def replace(self, effect: Replace) -> Any:
        """Perform ``effect``: with other joins and leaves of the same object if
        it is one. With none under way it goes out at once, from this task."""
        entry: Waiter | str | None = join_entry(effect) or leave_of(effect)
        name = effect.name
        if entry is None or _rv(effect.version) < 0 or bounded():
            return await self._send(effect)
        if name in self._busy:
            join = _Join(effect, entry)
            self._waiting.setdefault(name, []).append(join)
            return await join.done
        self._busy.add(name)
        last: tuple[str, Any] | None = None
        try:
            result = await self._send(effect)
            last = (effect.version, result)
            return result
        except Exception as exc:
            last = (effect.version, exc)
            raise
        finally:
            self._busy.discard(name)
            if self._waiting.get(name):  # those that came meanwhile: in a task of their own
                self._busy.add(name)
                asyncio.get_running_loop().create_task(
                    self._write(name, last), name="lockheed-joins"
                )

    async def _write(self, name: str, last: tuple[str, Any] | None) -> None:
        """Write the waiting joins of ``name``, a batch at a time, until none wait.
        ``last``: the base version and answer of the write before."""
        batch: list[_Join] = []
        try:
            while joins := [j for j in self._waiting.pop(name, ()) if not j.done.done()]:
                base, batch = self._batch(joins, last)
                if not batch:
                    continue
                try:
                    joining = [j.entry for j in batch if isinstance(j.entry, Waiter)]
                    leaving = [j.entry for j in batch if isinstance(j.entry, str)]
                    result = await self._send(joins_write(base, joining, leaving))
                except Exception as exc:  # unknown outcome: each reads and decides again
                    result = exc
                for join in batch:
                    if not join.done.done():
                        if isinstance(result, Exception):
                            join.done.set_exception(result)
                        else:
                            join.done.set_result(result)
                last = (base.version, result)
        finally:
            self._busy.discard(name)
            stranded = [*batch, *self._waiting.pop(name, ())]
            for join in stranded:
                if not join.done.done():
                    join.done.set_exception(
                        LockBackendError(
                            f"lock {name!r}: joining the line was interrupted",
                            lock=name,
                            transient=True,
                        )
                    )

    @staticmethod
    def _batch(joins: list[_Join], last: tuple[str, Any] | None) -> tuple[Record, list[_Join]]:
        """The base and the joins of the next write. Joins decided on the version
        that our last write replaced, or on its result, go on that result; else
        the joins decided on the newest version go on it. The others are
        decided on a version a newer one has replaced: they get ``CONFLICT``,
        as the server would answer (as do joins at or below the version of a
        last write that met a conflict)."""
        base: Record | None = None
        on: list[_Join] = []
        floor = -1  # versions up to this one are surely replaced
        if last is not None:
            replaced, answer = last
            if isinstance(answer, Record):
                base = answer
                on = [j for j in joins if j.effect.version in (replaced, answer.version)]
            elif not isinstance(answer, Exception):  # a conflict, or the object deleted
                floor = _rv(replaced)
        for join in joins:
            version = _rv(join.effect.version)
            if join in on or version <= floor:
                continue
            if base is None or version > _rv(base.version):
                base, on = join.effect.base, []
            if join.effect.version == base.version:
                on.append(join)
        for join in joins:
            if join not in on:
                join.done.set_result(CONFLICT)
        return (base if base is not None else joins[0].effect.base), on


class Reads:
    """The reads of one locker, shared per object; ``send`` performs one read.

    A read asked for while none of the object is under way goes out at once;
    the reads asked for while one is under way wait for it to end and then
    share one read, sent after each of them asked (so its answer is as new as
    a read of their own would be). Many tasks that meet conflicts at once
    (all leaving the line at a timeout, say) then cost a read or two, not one
    each. Every read of a round gets its answer, or its error. A read under a
    request deadline (a renewal's, bounded by its loss deadline) is its own.
    """

    def __init__(self, send: Callable[[Read], Awaitable[Any]]):
        self._send = send
        self._waiting: dict[str, list[asyncio.Future[Any]]] = {}
        self._busy: set[str] = set()  # the locks with a read under way

    async def read(self, effect: Read) -> Any:
        name = effect.name
        if bounded():  # under a request deadline (a renewal's): its own read
            return await self._send(effect)
        if name in self._busy:
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(name, []).append(done)
            return await done
        self._busy.add(name)  # none under way: this task reads at once
        try:
            return await self._send(effect)
        finally:
            self._busy.discard(name)
            if self._waiting.get(name):  # those that came meanwhile share the next
                self._busy.add(name)
                asyncio.get_running_loop().create_task(self._read(effect), name="lockheed-reads")

    async def _read(self, effect: Read) -> None:
        name = effect.name
        round_: list[asyncio.Future[Any]] = []
        try:
            while round_ := [f for f in self._waiting.pop(name, ()) if not f.done()]:
                try:
                    result: Any = await self._send(effect)
                except Exception as exc:
                    result = exc
                for done in round_:
                    if not done.done():
                        if isinstance(result, Exception):
                            done.set_exception(result)
                        else:
                            done.set_result(result)
        finally:
            self._busy.discard(name)
            for done in [*round_, *self._waiting.pop(name, ())]:
                if not done.done():
                    done.set_exception(
                        LockBackendError(
                            f"lock {name!r}: the read was interrupted", lock=name, transient=True
                        )
                    )


class Creates:
    """The creates of one locker, one per object at a time; ``send`` performs one.

    Every task that finds a new lock missing asks to create it. A create asked
    for while another of the same object is under way waits for it; if that
    one made the object (or found it made), the object exists and the answer
    is ``CONFLICT`` without a request, as the server's would be; else it goes
    out itself.
    """

    def __init__(self, send: Callable[[Create], Awaitable[Any]]):
        self._send = send
        self._busy: dict[str, asyncio.Future[bool]] = {}  # true: the object exists

    async def create(self, effect: Create) -> Any:
        if bounded():
            return await self._send(effect)
        busy = self._busy.get(effect.name)
        if busy is not None and await asyncio.shield(busy):
            return CONFLICT
        made: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._busy[effect.name] = made
        exists = False
        try:
            result = await self._send(effect)
            exists = result is CONFLICT or isinstance(result, Record)
            return result
        finally:
            made.set_result(exists)
            if self._busy.get(effect.name) is made:
                del self._busy[effect.name]
