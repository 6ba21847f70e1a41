"""Joins of many waiters written together: the pure part (``_core.join_entry``,
``_core.joins_write``) on the Memory locker with a fake clock, and the asyncio
batching (``_async.joins.Joins``) against a fake ``send`` over the same store."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from line_world import NAME, World
from lockheed._async.joins import Creates, Joins, Reads
from lockheed._core import (
    CONFLICT,
    Create,
    Flow,
    Read,
    Replace,
    Watch,
    acquire_flow,
    join_entry,
    joins_write,
    leave_of,
    release_flow,
    renew_flow,
)
from lockheed._queue import Waiter, read_queue
from lockheed._state import LockState, Record


def _join_of(world: World, who: str) -> tuple[Flow, Replace]:
    """Start ``who``'s acquire; return its flow and the join write it asks for."""
    flow = acquire_flow(world.intent(who), world.store.clock, world.mono + 60)
    effect = flow.send(None)
    while not isinstance(effect, Replace):
        effect = flow.send(world.store.execute(effect))
    return flow, effect


def _held(world: World) -> None:
    world.finish(acquire_flow(world.intent("holder"), world.store.clock, None))


def test_joins_at_one_version_go_in_one_write_and_each_waiter_then_waits() -> None:
    """Five waiters decide to join at the same version (one write each would
    meet four conflicts). Their entries written together put each where its
    own join would; each flow, given that write's result, waits without
    writing again."""
    world = World()
    _held(world)
    started = [_join_of(world, f"w{i}") for i in range(5)]
    base = started[0][1].base
    assert all(effect.version == base.version for _, effect in started)
    entries = [join_entry(effect) for _, effect in started]
    assert all(entry is not None for entry in entries)
    merged = joins_write(base, [e for e in entries if e is not None])
    result = world.store.execute(merged)
    assert isinstance(result, Record)
    assert world.line() == [f"w{i}" for i in range(5)]
    assert read_queue(result.meta) == tuple(entries)
    for flow, _ in started:
        assert isinstance(world.until_wait(flow, result), Watch)
    assert world.read().version == result.version  # nobody wrote again


def test_a_join_written_with_others_keeps_its_dated_place() -> None:
    """A waiter that began to ask at an older version than those at the end of
    the line goes ahead of them, in a batch as in a join of its own."""
    world = World()
    _held(world)
    world.store.execute(_join_of(world, "late-1")[1])
    _, late = _join_of(world, "late-2")
    entry = join_entry(late)
    assert entry is not None and entry.since is not None
    early = dataclasses.replace(entry, instance_id="early", since=entry.since - 100)
    written = world.store.execute(joins_write(late.base, [entry, early]))
    assert isinstance(written, Record)
    assert world.line() == ["early", "late-1", "late-2"]


def test_only_a_plain_join_of_a_mutex_is_batched() -> None:
    """Taking a free lock, a hand-off, a renewal and leaving the line are not joins."""
    world = World()
    take = acquire_flow(world.intent("holder"), world.store.clock, None)
    effect = take.send(None)
    while not isinstance(effect, Replace) or effect.base.state is None:
        effect = take.send(world.store.execute(effect))
    assert join_entry(effect) is None  # the take
    world.finish(take, world.store.execute(effect))
    _, join = _join_of(world, "waiter")
    assert join_entry(join) is not None
    world.store.execute(join)
    renew = renew_flow(world.intent("holder"), world.store.clock, None, 1)
    effect = renew.send(None)
    effect = renew.send(world.store.execute(effect))
    assert isinstance(effect, Replace) and join_entry(effect) is None
    release = release_flow(world.intent("holder"), world.store.clock, None, None)
    effect = release.send(None)
    effect = release.send(world.store.execute(effect))
    assert isinstance(effect, Replace) and join_entry(effect) is None  # the hand-off


class _Server:
    """A fake ``send`` over the Memory store: counts writes; ``gate`` holds them."""

    def __init__(self, world: World):
        self.world = world
        self.writes: list[Replace] = []
        self.gate: asyncio.Event | None = None
        self.sent: asyncio.Event | None = None

    async def send(self, effect: Replace) -> Any:
        self.writes.append(effect)
        if self.sent is not None:
            self.sent.set()
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)  # a request's answer comes later
        return self.world.store.execute(effect)


def test_joins_arriving_together_are_one_write() -> None:
    """The first join goes out at once; those that come while it is under way
    go out together on its result, without a conflict."""
    world = World()
    _held(world)
    joins = [_join_of(world, f"w{i}")[1] for i in range(6)]
    server = _Server(world)

    async def main() -> list[Any]:
        batcher = Joins(server.send)
        return await asyncio.gather(*(batcher.replace(j) for j in joins))

    results = asyncio.run(main())
    assert len(server.writes) == 2
    assert server.writes[1].version == results[0].version
    assert all(isinstance(r, Record) and r is results[1] for r in results[1:])
    assert world.line() == [f"w{i}" for i in range(6)]


def test_joins_arriving_during_a_write_go_on_its_result_without_conflict() -> None:
    """A join decided on the version that a write under way replaces would
    conflict; it is written on that write's result instead. A join decided
    on an older version still gets CONFLICT, without a request."""
    world = World()
    _held(world)
    older = world.read()
    world.store.execute(_join_of(world, "before")[1])
    first, second = (_join_of(world, f"w{i}")[1] for i in range(2))
    server = _Server(world)
    assert int(older.version) < int(first.version)

    async def main() -> tuple[Any, Any, Any]:
        batcher = Joins(server.send)
        server.gate, server.sent = asyncio.Event(), asyncio.Event()
        one = asyncio.ensure_future(batcher.replace(first))
        await server.sent.wait()
        two = asyncio.ensure_future(batcher.replace(second))
        entry = join_entry(second)
        assert entry is not None
        stale = joins_write(older, [dataclasses.replace(entry, instance_id="stale")])
        three = asyncio.ensure_future(batcher.replace(stale))
        await asyncio.sleep(0)
        server.gate.set()
        return await one, await two, await three

    got_one, got_two, got_three = asyncio.run(main())
    assert isinstance(got_one, Record) and isinstance(got_two, Record)
    assert len(server.writes) == 2
    assert server.writes[1].version == got_one.version
    assert world.line() == ["before", "w0", "w1"]
    assert got_three is CONFLICT


def test_leaves_at_one_version_go_in_one_write() -> None:
    """Waiters whose timeouts run out together each leave the line; their
    leaves (only an entry removed: :func:`leave_of`) go in one write, and a
    join coming with them is written beside them."""
    world = World()
    _held(world)
    for i in range(4):
        world.store.execute(_join_of(world, f"w{i}")[1])
    leaves = []
    for who in ("w1", "w3"):
        flow = release_flow(world.intent(who), world.store.clock, None, None)
        effect = flow.send(None)
        effect = flow.send(world.store.execute(effect))
        assert isinstance(effect, Replace) and leave_of(effect) == who
        assert join_entry(effect) is None
        leaves.append(effect)
    _, join = _join_of(world, "w4")
    server = _Server(world)

    async def main() -> list[Any]:
        batcher = Joins(server.send)
        return await asyncio.gather(*(batcher.replace(e) for e in (*leaves, join)))

    results = asyncio.run(main())
    assert len(server.writes) == 2  # the first leave alone, then the others together
    assert all(isinstance(r, Record) for r in results)
    assert world.line() == ["w0", "w2", "w4"]


def test_reads_asked_together_share_one_and_later_ones_the_next() -> None:
    """A read asked while none is under way goes out at once; those asked
    while it is under way share the next one, sent after they asked."""
    world = World()
    _held(world)
    sent: list[float] = []
    gate, out = asyncio.Event(), asyncio.Event()

    async def send(effect: Read) -> Any:
        sent.append(world.mono)
        out.set()
        await gate.wait()
        return world.store.execute(effect)

    async def main() -> tuple[list[Any], list[Any]]:
        reads = Reads(send)
        first = [asyncio.ensure_future(reads.read(Read(NAME))) for _ in range(5)]
        await out.wait()
        world.advance(1.0)
        later = [asyncio.ensure_future(reads.read(Read(NAME))) for _ in range(5)]
        gate.set()
        return list(await asyncio.gather(*first)), list(await asyncio.gather(*later))

    first, later = asyncio.run(main())
    assert sent == [100.0, 101.0]  # the second read went out after the later ones asked
    assert isinstance(first[0], Record) and isinstance(later[0], Record)
    assert all(r is later[0] for r in [*first[1:], *later])


def test_creates_of_a_new_lock_asked_together_send_one() -> None:
    """Tasks that all find a new lock missing each ask to create it: one
    create goes out, the others are answered CONFLICT (the object exists), as
    the server would."""
    world = World()
    flows = [acquire_flow(world.intent(f"w{i}"), world.store.clock, None) for i in range(4)]
    missing = world.store.execute(Read(NAME))
    assert missing is None
    for flow in flows:
        assert isinstance(flow.send(None), Read)  # each reads first
    asked = [flow.send(missing) for flow in flows]
    creates = [c for c in asked if isinstance(c, Create)]
    assert len(creates) == len(flows)
    sent: list[Create] = []

    async def send(effect: Create) -> Any:
        sent.append(effect)
        await asyncio.sleep(0)
        return world.store.execute(effect)

    async def main() -> list[Any]:
        batcher = Creates(send)
        return list(await asyncio.gather(*(batcher.create(c) for c in creates)))

    results = asyncio.run(main())
    assert len(sent) == 1
    assert isinstance(results[0], Record)
    assert results[1:] == [CONFLICT] * 3


def _line_write(line: list[str], written: list[str]) -> Replace:
    """A write of the line ``written`` over a lock whose line is ``line``."""
    base = joins_write(Record(NAME, "7", LockState(NAME, "mutex"), {}), [_waiter(w) for w in line])
    stored = Record(NAME, "7", base.state, {k: v for k, v in base.meta.items() if v})
    again = joins_write(Record(NAME, "7", base.state, {}), [_waiter(w) for w in written])
    return Replace(NAME, "7", base.state, again.meta, stored)


def _waiter(who: str) -> Waiter:
    return Waiter(who, timedelta(seconds=30), since=1)


@given(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=8, unique=True), st.data())
def test_a_leave_is_one_entry_removed_and_nothing_else(
    line: list[str], data: st.DataObject
) -> None:
    gone = data.draw(st.sampled_from(line))
    assert leave_of(_line_write(line, [w for w in line if w != gone])) == gone
    assert leave_of(_line_write(line, line)) is None  # nothing removed
    if len(line) >= 2:
        two = data.draw(st.sampled_from([w for w in line if w != gone]))
        assert leave_of(_line_write(line, [w for w in line if w not in (gone, two)])) is None
        swapped = [w for w in line if w != gone]
        swapped.reverse()
        if len(swapped) >= 2:
            assert leave_of(_line_write(line, swapped)) is None  # the rest reordered
    assert leave_of(_line_write(line, [*(w for w in line if w != gone), "z"])) is None
