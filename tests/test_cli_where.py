"""The ``--where`` language of ``lockheed list`` (pure: no cluster)."""

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockheed import Condition, LockError
from lockheed._cli_where import Facts, WhereError, parse_selector, parse_where
from lockheed._conditions import LockView


def facts(
    tags: tuple[str, ...] = (),
    holders: tuple[str, ...] = (),
    expires_in: float | None = None,
    waiters: int = 0,
    name: str = "job",
) -> Facts:
    if holders and expires_in is None:
        expires_in = 60.0
    return Facts(name, frozenset(tags), holders, expires_in, waiters)


@pytest.mark.parametrize(
    ("text", "lock", "expected"),
    [
        ("tags contains nightly and acquired", facts(("nightly",), ("a",)), True),
        ("tags contains nightly and acquired", facts(("nightly",)), False),
        ("tags contains nightly and acquired", facts(("hourly",), ("a",)), False),
        ("not acquired or expires < 30s", facts(), True),
        ("not acquired or expires < 30s", facts(holders=("a",), expires_in=29.5), True),
        ("not acquired or expires < 30s", facts(holders=("a",), expires_in=30.0), False),
        ("expires < 30s", facts(), False),  # a free lock has no expiry to compare
        ("expires > 1d", facts(holders=("a",), expires_in=math.inf), True),  # never expires
        ("expires >= 1.5m", facts(holders=("a",), expires_in=90), True),
        ("expires <= 500ms", facts(holders=("a",), expires_in=0.4), True),
        ("held and not free", facts(holders=("a",)), True),
        ("free", facts(holders=("a",)), False),
        ("waiters > 0", facts(waiters=2), True),
        ("waiters = 0", facts(waiters=2), False),
        ("holder = worker-1", facts(holders=("worker-1",)), True),
        ("holder != worker-1", facts(holders=("worker-1",)), False),
        ('holder = "pod a"', facts(holders=("pod a",)), True),
        ("name = job and (tags contains x or tags contains y)", facts(("y",)), True),
        ("name != job", facts(), False),
        # and binds tighter than or; not binds tightest
        ("acquired or tags contains x and tags contains y", facts(("x",)), False),
        ("(acquired or tags contains x) and tags contains y", facts(("x", "y")), True),
        ("not not acquired", facts(holders=("a",)), True),
    ],
)
def test_expressions_select_what_they_say(text: str, lock: Facts, expected: bool) -> None:
    assert parse_where(text).matches(lock) is expected


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("expires < soon", 11, "expected a duration"),
        ("not acquired or expires < 30", 27, "expected a duration"),
        ("tags nightly", 6, "expected 'contains'"),
        ("tags contains", 14, "expected a tag"),
        ("acquired and", 13, "expected a test"),
        ("acquired nightly", 10, "expected 'and', 'or' or the end"),
        ("(acquired or free", 18, "expected ')'"),
        ("acquired & free", 10, "unexpected character '&'"),
        ("holder < x", 8, "expected one of = !="),
        ("waiters > many", 11, "expected a number"),
        ("tags contains 'open", 15, "unterminated quoted string"),
        ("", 1, "empty condition"),
        ("   ", 1, "empty condition"),
        ("acquried", 1, "expected a test"),
    ],
)
def test_errors_point_at_the_bad_token(text: str, column: int, message: str) -> None:
    with pytest.raises(WhereError) as caught:
        parse_where(text)
    error = caught.value
    assert isinstance(error, LockError) and isinstance(error, ValueError)
    assert error.column == column
    assert message in error.message
    first, shown, caret = str(error).splitlines()
    assert first.endswith(f"at column {column}:")
    assert shown == f"  {text}"
    assert caret == "  " + " " * (column - 1) + "^"
    copy = pickle.loads(pickle.dumps(error))  # errors cross process boundaries
    assert str(copy) == str(error)


def test_go_vocabulary_maps_onto_a_condition() -> None:
    cond = parse_where("tags contains nightly and not acquired").condition()
    assert cond.to_dict() == {
        "operation": "and",
        "conditions": [
            {"operation": "contains", "field": "tags", "value": "nightly"},
            {"operation": "equals", "field": "acquired", "value": False},
        ],
    }
    # not (a or b) == not a and not b (De Morgan); "free" is not acquired
    neg = parse_where("not (free or held)").condition()
    assert neg.to_dict() == {
        "operation": "and",
        "conditions": [
            {"operation": "equals", "field": "acquired", "value": True},
            {"operation": "equals", "field": "acquired", "value": False},
        ],
    }


@pytest.mark.parametrize(
    ("text", "column"),
    [("acquired or expires < 30s", 13), ("not tags contains x", 5), ("waiters > 0", 1)],
)
def test_what_go_cannot_express_is_refused_at_its_token(text: str, column: int) -> None:
    with pytest.raises(WhereError, match="no equivalent in Go lockheed's conditions") as caught:
        parse_where(text).condition()
    assert caught.value.column == column


# Expressions of Go's vocabulary, to check that both evaluations agree.
_leaf = st.sampled_from(["acquired", "free", "tags contains a", "tags contains b"])
_expr = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        inner.map(lambda e: f"not acquired and {e}" if "tags" in e else f"not {e}"),
    ),
    max_leaves=6,
)


@given(
    _expr,
    st.frozensets(st.sampled_from(["a", "b", "c"])),
    st.booleans(),
)
def test_the_condition_selects_exactly_what_the_expression_does(
    text: str, tags: frozenset[str], held: bool
) -> None:
    where = parse_where(text)
    cond = where.condition()
    assert Condition.from_dict(cond.to_dict()) == cond  # Go's JSON round trip
    lock = facts(tuple(tags), ("x",) if held else ())
    assert cond.matches(LockView(tags, held)) is where.matches(lock)


def test_selector_takes_tags_and_negated_tags() -> None:
    where = parse_selector("nightly, !paused")
    assert where.matches(facts(("nightly",)))
    assert not where.matches(facts(("nightly", "paused")))
    assert not where.matches(facts(("hourly",)))
    with pytest.raises(WhereError) as caught:
        parse_selector("nightly,,x")
    assert caught.value.column == 9
    with pytest.raises(WhereError) as caught:
        parse_selector("a,!")
    assert caught.value.column == 3
