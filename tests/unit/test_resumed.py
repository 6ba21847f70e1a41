"""``_core.resumed``: a flow whose first effect was performed elsewhere (the
renewer's batch) goes on exactly as if its shell had performed it."""

from __future__ import annotations

from typing import Any

import pytest

from lockheed import LockBackendError
from lockheed._core import Flow, Read, resumed


class Closed:
    closed = False


def toy(seen: list[Any], state: Closed) -> Flow:
    """Asks for A; on an error asks for B; then for C, and returns what it saw."""
    try:
        try:
            seen.append((yield Read("a")))
        except LockBackendError as exc:
            seen.append(f"error {exc}")
            seen.append((yield Read("b")))
        seen.append((yield Read("c")))
        return tuple(seen)
    finally:
        state.closed = True


def drive(flow: Flow, answers: dict[str, Any]) -> tuple[list[str], Any]:
    asked: list[str] = []
    result: Any = None
    try:
        while True:
            effect = flow.send(result)
            asked.append(effect.name)
            result = answers[effect.name]
    except StopIteration as done:
        return asked, done.value


def test_a_result_goes_in_as_the_answer_to_the_first_effect() -> None:
    state = Closed()
    flow = toy([], state)
    assert next(flow) == Read("a")  # performed elsewhere
    asked, value = drive(resumed(flow, "A"), {"c": "C"})
    assert asked == ["c"]
    assert value == ("A", "C")
    assert state.closed


def test_an_error_is_thrown_in_and_the_flow_decides() -> None:
    flow = toy([], Closed())
    next(flow)
    asked, value = drive(resumed(flow, error=LockBackendError("boom")), {"b": "B", "c": "C"})
    assert asked == ["b", "c"]
    assert value == ("error boom", "B", "C")


def test_a_later_error_is_thrown_into_the_flow_too() -> None:
    flow = toy([], Closed())
    next(flow)
    wrapped = resumed(flow, "A")
    assert next(wrapped) == Read("c")
    with pytest.raises(RuntimeError, match="not for the flow"):
        wrapped.throw(RuntimeError("not for the flow"))


def test_closing_it_closes_the_flow() -> None:
    state = Closed()
    flow = toy([], state)
    next(flow)
    wrapped = resumed(flow, "A")
    assert next(wrapped) == Read("c")
    wrapped.close()
    assert state.closed


def test_a_flow_that_ends_on_its_first_answer_returns_at_once() -> None:
    def one() -> Flow:
        return (yield Read("a"))

    flow = one()
    next(flow)
    assert drive(resumed(flow, "A"), {}) == ([], "A")
