"""Conditions over a lock's state: evaluation, composition, validation, Go's JSON shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockheed import Condition, Field, Operation, acquired, all_of, any_of, tags_contain
from lockheed._conditions import LockView

FREE = LockView(frozenset(), False)
HELD = LockView(frozenset(), True)
A = tags_contain("a")
B = tags_contain("b")
C = tags_contain("c")


def view(*tags: str, held: bool = False) -> LockView:
    return LockView(frozenset(tags), held)


# ---------------------------------------------------------------- evaluation


def test_tags_contain() -> None:
    assert A.matches(view("a", "b"))
    assert not A.matches(view("b"))
    assert not A.matches(FREE)
    assert not tags_contain("").matches(view("a"))
    assert tags_contain("").matches(view(""))
    assert not tags_contain("a").matches(view("ab"))  # whole tags, not substrings


def test_acquired() -> None:
    assert acquired().matches(HELD)
    assert not acquired().matches(FREE)
    assert acquired(True).matches(HELD)
    assert acquired(False).matches(FREE)
    assert not acquired(False).matches(HELD)


@pytest.mark.parametrize("tags", [(), ("a",), ("b",), ("a", "b")])
@pytest.mark.parametrize("held", [False, True])
def test_and_or_truth_tables(tags: tuple[str, ...], held: bool) -> None:
    v = view(*tags, held=held)
    has_a, has_b = "a" in tags, "b" in tags
    assert all_of(A, B).matches(v) == (has_a and has_b)
    assert any_of(A, B).matches(v) == (has_a or has_b)
    assert (A & acquired()).matches(v) == (has_a and held)
    assert (A | acquired(False)).matches(v) == (has_a or not held)
    assert ((A | B) & acquired()).matches(v) == ((has_a or has_b) and held)
    assert all_of(A).matches(v) == has_a
    assert any_of(B).matches(v) == has_b


# ---------------------------------------------------------------- composition


def test_and_flattens_nested_ands() -> None:
    assert Condition(Operation.AND, conditions=(A, B, C)) == (A & B) & C
    assert Condition(Operation.AND, conditions=(A, B, C)) == A & (B & C)
    assert all_of(A & B, C & A) == Condition(Operation.AND, conditions=(A, B, C, A))


def test_or_flattens_nested_ors() -> None:
    assert Condition(Operation.OR, conditions=(A, B, C)) == A | B | C
    assert Condition(Operation.OR, conditions=(A, B, C)) == A | (B | C)


def test_mixed_operators_do_not_flatten() -> None:
    either = A | B
    both = either & C
    assert both.operation is Operation.AND
    assert both.conditions == (either, C)
    assert Condition(Operation.OR, conditions=(A & B, C)) == (A & B) | C


def test_operators_do_not_mutate_operands() -> None:
    both = A & B
    assert (both & C).conditions == (A, B, C)
    assert both.conditions == (A, B)


def test_conditions_are_hashable_values() -> None:
    assert tags_contain("a") == A
    assert hash(A & B) == hash(all_of(A, B))
    assert len({A, tags_contain("a"), B}) == 2


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((Operation.CONTAINS, Field.ACQUIRED, "a"), "'contains' applies to field 'tags'"),
        ((Operation.CONTAINS, Field.TAGS, True), "'contains' applies to field 'tags'"),
        ((Operation.CONTAINS, Field.TAGS, None), "'contains' applies to field 'tags'"),
        ((Operation.CONTAINS, None, "a"), "'contains' applies to field 'tags'"),
        ((Operation.EQUALS, Field.ACQUIRED, "true"), "'equals' applies to field 'acquired'"),
        ((Operation.EQUALS, Field.ACQUIRED, 1), "'equals' applies to field 'acquired'"),
        ((Operation.EQUALS, Field.ACQUIRED, None), "'equals' applies to field 'acquired'"),
        ((Operation.EQUALS, Field.TAGS, True), "'equals' applies to field 'acquired'"),
        ((Operation.AND,), "needs at least one sub-condition"),
        ((Operation.OR, None, None, ()), "needs at least one sub-condition"),
        ((Operation.AND, Field.TAGS, "a", (A,)), "takes sub-conditions, not a field"),
        ((Operation.OR, None, True, (A,)), "takes sub-conditions, not a field"),
        ((Operation.CONTAINS, Field.TAGS, "a", (B,)), "takes no sub-conditions"),
        ((Operation.EQUALS, Field.ACQUIRED, True, (B,)), "takes no sub-conditions"),
    ],
)
def test_invalid_conditions_fail_when_built(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Condition(*args)


def test_sub_conditions_must_be_conditions() -> None:
    with pytest.raises(TypeError, match="must be a Condition"):
        Condition(Operation.AND, conditions=("a",))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a Condition"):
        Condition(Operation.OR, conditions=(A, {"operation": "contains"}))  # type: ignore[arg-type]


def test_empty_combinations_are_refused() -> None:
    with pytest.raises(ValueError, match="needs at least one"):
        all_of()
    with pytest.raises(ValueError, match="needs at least one"):
        any_of()


def test_acquired_needs_a_real_bool() -> None:
    with pytest.raises(ValueError, match="boolean"):
        acquired(1)  # type: ignore[arg-type]


# ---------------------------------------------------------------- Go's JSON shape


def test_to_dict_shape() -> None:
    cond = (A | acquired(False)) & B
    assert cond.to_dict() == {
        "operation": "and",
        "conditions": [
            {
                "operation": "or",
                "conditions": [
                    {"operation": "contains", "field": "tags", "value": "a"},
                    {"operation": "equals", "field": "acquired", "value": False},
                ],
            },
            {"operation": "contains", "field": "tags", "value": "b"},
        ],
    }


def test_from_dict_accepts_go_zero_values() -> None:
    """Go marshals every field: empty field and null value/conditions where unused."""
    go = {
        "operation": "or",
        "field": "",
        "value": None,
        "conditions": [
            {"operation": "contains", "field": "tags", "value": "a", "conditions": None},
            {"operation": "equals", "field": "acquired", "value": True, "conditions": []},
        ],
    }
    assert Condition.from_dict(go) == A | acquired()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({}, "unknown or missing operation"),
        ({"operation": "xor", "conditions": []}, "unknown or missing operation"),
        ({"operation": "AND", "conditions": []}, "unknown or missing operation"),
        ({"operation": None}, "unknown or missing operation"),
        ({"operation": ["and"]}, "unknown or missing operation"),
        ({"operation": "contains", "field": "name", "value": "a"}, "unknown field"),
        ({"operation": "contains", "field": ["tags"], "value": "a"}, "unknown field"),
        ({"operation": "contains", "field": "tags", "value": True}, "'contains' applies"),
        ({"operation": "contains", "field": "tags"}, "'contains' applies"),
        ({"operation": "equals", "field": "acquired", "value": "true"}, "'equals' applies"),
        ({"operation": "equals", "field": "tags", "value": True}, "'equals' applies"),
        ({"operation": "and"}, "needs at least one"),
        ({"operation": "and", "conditions": None}, "needs at least one"),
        ({"operation": "or", "conditions": [{"operation": "nope"}]}, "unknown or missing"),
        ({"operation": "or", "conditions": ["a"]}, "must be an object"),
        (
            {"operation": "or", "value": "x", "conditions": [{"operation": "and"}]},
            "needs at least one",
        ),
    ],
)
def test_from_dict_rejects(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Condition.from_dict(data)


def test_from_dict_rejects_non_objects() -> None:
    with pytest.raises(ValueError, match="must be an object"):
        Condition.from_dict(["and"])  # type: ignore[arg-type]


# ---------------------------------------------------------------- properties

TAGS = ["a", "b", "c", ""]

leaves = st.sampled_from(TAGS).map(tags_contain) | st.booleans().map(acquired)
conditions = st.recursive(
    leaves,
    lambda children: st.builds(
        Condition,
        st.sampled_from([Operation.AND, Operation.OR]),
        conditions=st.lists(children, min_size=1, max_size=3).map(tuple),
    ),
    max_leaves=12,
)
views = st.builds(LockView, st.frozensets(st.sampled_from(TAGS)), st.booleans())


def reference(doc: dict[str, Any], v: LockView) -> bool:
    """An independent evaluator over Go's JSON shape."""
    op = doc["operation"]
    if op == "and":
        return all(reference(c, v) for c in doc["conditions"])
    if op == "or":
        return any(reference(c, v) for c in doc["conditions"])
    if op == "contains":
        return doc["value"] in v.tags
    return bool(doc["value"] == v.acquired)


@given(conditions)
def test_dict_round_trip(cond: Condition) -> None:
    assert Condition.from_dict(cond.to_dict()) == cond
    assert Condition.from_dict(json.loads(json.dumps(cond.to_dict()))) == cond


@given(conditions, views)
def test_matches_agrees_with_reference(cond: Condition, v: LockView) -> None:
    assert cond.matches(v) == reference(cond.to_dict(), v)


@given(conditions, conditions, views)
def test_operators_mean_and_or(left: Condition, right: Condition, v: LockView) -> None:
    assert (left & right).matches(v) == (left.matches(v) and right.matches(v))
    assert (left | right).matches(v) == (left.matches(v) or right.matches(v))


and_trees = st.recursive(leaves, lambda ch: st.tuples(ch, ch).map(lambda p: p[0] & p[1]))
or_trees = st.recursive(leaves, lambda ch: st.tuples(ch, ch).map(lambda p: p[0] | p[1]))


@given(and_trees, or_trees)
def test_operator_chains_are_flat(conjunction: Condition, disjunction: Condition) -> None:
    """However ``&`` (or ``|``) chains are grouped, the result is one level of leaves."""
    for cond in (conjunction, disjunction):
        assert all(
            child.operation not in (Operation.AND, Operation.OR) for child in cond.conditions
        )
