"""The renewers' due-time queue."""

from __future__ import annotations

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
