"""The renewers' due-time queue."""

from __future__ import annotations

import pytest

from lockheed._schedule import DueQueue


def test_items_come_out_in_due_order_and_only_when_due() -> None:
    queue: DueQueue[str] = DueQueue()
    queue.push("late", 5.0)
    queue.push("early", 1.0)
    assert queue.pop_due(0.0) == (None, 1.0)
    assert queue.pop_due(1.0) == ("early", None)
    assert queue.pop_due(4.0) == (None, 1.0)
    assert queue.pop_due(9.0) == ("late", None)
    assert queue.pop_due(9.0) == (None, None)


def test_rescheduling_and_cancelling_drop_older_entries() -> None:
    queue: DueQueue[str] = DueQueue()
    queue.push("a", 1.0)
    queue.push("a", 3.0)  # moved later: the entry at 1.0 is stale
    queue.push("b", 2.0)
    queue.cancel("b")
    assert queue.pop_due(2.5) == (None, 0.5)
    assert queue.pop_due(3.0) == ("a", None)
    assert queue.pop_due(10.0) == (None, None)


def test_push_if_absent_keeps_a_newer_schedule() -> None:
    queue: DueQueue[str] = DueQueue()
    queue.push("a", 1.0)
    assert queue.pop_due(1.0) == ("a", None)  # its tick runs...
    queue.push("a", 7.0)  # ...while it is scheduled anew
    queue.push_if_absent("a", 2.0)  # the tick's own answer must not override that
    assert queue.pop_due(2.0) == (None, 5.0)
    queue.push_if_absent("b", 2.0)
    assert queue.pop_due(2.0) == ("b", None)


def _batch(
    queue: DueQueue[str], now: float, early: dict[str, float | None], limit: int = 10
) -> tuple[list[str], float | None]:
    """pop_batch with each item's key its first letter."""
    return queue.pop_batch(now, lambda item: early.get(item, 0.5), lambda item: item[0], limit, 1.0)


def _waits(popped: tuple[list[str], float | None]) -> float | None:
    """How long until one is due, when none is."""
    batch, wait = popped
    assert batch == []
    return wait


def test_a_due_item_takes_those_of_its_key_due_shortly_after() -> None:
    queue: DueQueue[str] = DueQueue()
    for item, due in [("a1", 1.0), ("a2", 1.2), ("b1", 1.3), ("a3", 1.4), ("a4", 1.6)]:
        queue.push(item, due)
    assert _batch(queue, 0.5, {}) == ([], 0.5)  # nothing is due: nobody goes early alone
    # a2 and a3 may go up to 0.5 early; b1 (another key) and a4 (too far) stay
    assert _batch(queue, 1.0, {}) == (["a1", "a2", "a3"], None)
    assert _waits(_batch(queue, 1.0, {})) == pytest.approx(0.3)  # b1 kept its due time
    assert _batch(queue, 1.3, {}) == (["b1"], None)
    assert _batch(queue, 1.6, {}) == (["a4"], None)


def test_an_item_that_goes_alone_neither_takes_nor_joins_a_batch() -> None:
    queue: DueQueue[str] = DueQueue()
    for item, due in [("a1", 1.0), ("a2", 1.1), ("a3", 1.2)]:
        queue.push(item, due)
    alone: dict[str, float | None] = {"a1": None}
    assert _batch(queue, 1.0, alone) == (["a1"], None)
    queue.push("a1", 1.0)
    alone = {"a2": None}  # passed over: it keeps its own due time
    assert _batch(queue, 1.0, alone) == (["a1", "a3"], None)
    assert _waits(_batch(queue, 1.0, alone)) == pytest.approx(0.1)
    assert _batch(queue, 1.1, alone) == (["a2"], None)


def test_a_batch_is_at_most_limit_long_and_skips_stale_entries() -> None:
    queue: DueQueue[str] = DueQueue()
    items = [f"a{i}" for i in range(6)]  # the queue knows an item by its identity
    for i, item in enumerate(items):
        queue.push(item, 1.0 + i / 100)
    queue.cancel(items[1])
    queue.push(items[2], 9.0)  # moved: its entry at 1.02 is stale
    assert _batch(queue, 1.0, {}, limit=3) == (["a0", "a3", "a4"], None)
    assert _waits(_batch(queue, 1.0, {})) == pytest.approx(0.05)  # only a5 is left, not due
    assert _batch(queue, 1.05, {}) == (["a5"], None)
    assert _waits(_batch(queue, 1.05, {})) == pytest.approx(7.95)
