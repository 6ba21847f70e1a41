"""Conditions over a lock's state, in Go lockheed's vocabulary.

A condition is a tree: leaves test one field (``tags contains X``,
``acquired equals B``; extending Go's vocabulary for shared locks and
semaphores: ``holders equals N``, the number of live leases, and ``lockType
equals T``) and ``and``/``or`` nodes combine children. Conditions
select locks in :func:`lockheed.list_locks` and permit a forced takeover in
:meth:`lockheed.Lock.with_force`. They are immutable and validated when built,
so a malformed condition fails at construction, never in the middle of an
acquire. Go's strings (``"contains"``, ``"tags"``, ...) are accepted for the
:class:`Operation` and :class:`Field` members.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

__all__ = [
    "Condition",
    "Field",
    "LockView",
    "Operation",
    "acquired",
    "all_of",
    "any_of",
    "holders",
    "lock_type",
    "tags_contain",
]


class Operation(str, Enum):
    CONTAINS = "contains"
    EQUALS = "equals"
    AND = "and"
    OR = "or"


class Field(str, Enum):
    TAGS = "tags"
    ACQUIRED = "acquired"
    HOLDERS = "holders"
    LOCK_TYPE = "lockType"


@dataclass(frozen=True)
class LockView:
    """What a condition can see of a lock: its tags, whether any lease is live, how
    many are (None: not counted, one if acquired) and its type."""

    tags: frozenset[str]
    acquired: bool
    holders: int | None = None
    lock_type: str = "mutex"


@dataclass(frozen=True)
class Condition:
    """One node of a condition tree; build with the helper functions and ``&`` / ``|``."""

    operation: Operation
    field: Field | None = None
    value: str | bool | int | None = None
    conditions: tuple[Condition, ...] = ()

    def __post_init__(self) -> None:
        # Go's strings ("contains", "tags", ...) are accepted for the enums' members.
        object.__setattr__(self, "operation", _member(Operation, self.operation, "operation"))
        if self.field is not None:
            object.__setattr__(self, "field", _member(Field, self.field, "field"))
        if not isinstance(self.conditions, tuple):
            if isinstance(self.conditions, (str, bytes, Mapping)) or not isinstance(
                self.conditions, Iterable
            ):
                raise TypeError("conditions must be a sequence of Conditions")
            object.__setattr__(self, "conditions", tuple(self.conditions))
        op, field, value = self.operation, self.field, self.value
        if op in (Operation.AND, Operation.OR):
            if field is not None or value is not None:
                raise ValueError(f"condition {op.value!r} takes sub-conditions, not a field")
            if not self.conditions:
                raise ValueError(f"condition {op.value!r} needs at least one sub-condition")
            for sub in self.conditions:
                if not isinstance(sub, Condition):
                    raise TypeError(f"sub-condition must be a Condition, not {type(sub).__name__}")
        elif op is Operation.CONTAINS:
            if field is not Field.TAGS or not isinstance(value, str):
                raise ValueError("'contains' applies to field 'tags' with a string value")
        elif op is Operation.EQUALS:
            if field is Field.HOLDERS:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError("'equals' on field 'holders' takes an integer from 0")
            elif field is Field.LOCK_TYPE:
                if not isinstance(value, str) or not value:
                    raise ValueError("'equals' on field 'lockType' takes a non-empty string")
            elif field is not Field.ACQUIRED or not isinstance(value, bool):
                raise ValueError(
                    "'equals' applies to field 'acquired' with a boolean value, "
                    "'holders' with an integer or 'lockType' with a string"
                )
        else:  # pragma: no cover - Enum makes this unreachable
            raise ValueError(f"unknown operation {op!r}")
        if op not in (Operation.AND, Operation.OR) and self.conditions:
            raise ValueError(f"condition {op.value!r} takes no sub-conditions")

    def matches(self, view: LockView) -> bool:
        op = self.operation
        if op is Operation.AND:
            return all(c.matches(view) for c in self.conditions)
        if op is Operation.OR:
            return any(c.matches(view) for c in self.conditions)
        if op is Operation.CONTAINS:
            return self.value in view.tags
        if self.field is Field.HOLDERS:
            count = int(view.acquired) if view.holders is None else view.holders
            return count == self.value
        if self.field is Field.LOCK_TYPE:
            return (view.lock_type or "mutex") == self.value
        return view.acquired is self.value

    def __and__(self, other: Condition) -> Condition:
        return all_of(self, other)

    def __or__(self, other: Condition) -> Condition:
        return any_of(self, other)

    def to_dict(self) -> dict[str, Any]:
        """Go lockheed's JSON shape: ``{"operation", "field", "value", "conditions"}``."""
        out: dict[str, Any] = {"operation": self.operation.value}
        if self.field is not None:
            out["field"] = self.field.value
            out["value"] = self.value
        if self.conditions:
            out["conditions"] = [c.to_dict() for c in self.conditions]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Condition:
        if not isinstance(data, Mapping):
            raise ValueError(f"a condition must be an object, not {type(data).__name__}")
        try:
            op = Operation(data["operation"])
        except (KeyError, ValueError):
            raise ValueError(f"unknown or missing operation in condition {data!r}") from None
        raw_field = data.get("field")
        try:
            field = Field(raw_field) if raw_field not in (None, "") else None
        except ValueError:
            raise ValueError(f"unknown field {raw_field!r} in condition") from None
        subs = tuple(cls.from_dict(c) for c in data.get("conditions") or ())
        return cls(op, field, data.get("value"), subs)


_E = TypeVar("_E", Operation, Field)


def _member(enum: type[_E], value: Any, what: str) -> _E:
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except ValueError:
        names = ", ".join(repr(m.value) for m in enum)
        raise ValueError(
            f"unknown {what} {value!r}: use {enum.__name__}.<member> or one of Go's strings {names}"
        ) from None


def tags_contain(tag: str) -> Condition:
    """True when the lock's tags include ``tag``."""
    return Condition(Operation.CONTAINS, Field.TAGS, tag)


def acquired(value: bool = True) -> Condition:
    """True when the lock has (``value=True``) or lacks a live lease."""
    return Condition(Operation.EQUALS, Field.ACQUIRED, value)


def _combine(op: Operation, conditions: Iterable[Condition]) -> Condition:
    flat: list[Condition] = []
    for c in conditions:
        flat.extend(c.conditions if c.operation is op else (c,))
    return Condition(op, conditions=tuple(flat))


def holders(count: int) -> Condition:
    """The lock has exactly ``count`` live leases (holders)."""
    return Condition(Operation.EQUALS, Field.HOLDERS, count)


def lock_type(kind: str) -> Condition:
    """The lock is of type ``kind`` (``"mutex"``, ``"shared"``, ``"semaphore"``)."""
    return Condition(Operation.EQUALS, Field.LOCK_TYPE, kind)


def all_of(*conditions: Condition) -> Condition:
    """True when every condition is (Go's ``and``)."""
    return _combine(Operation.AND, conditions)


def any_of(*conditions: Condition) -> Condition:
    """True when at least one condition is (Go's ``or``)."""
    return _combine(Operation.OR, conditions)
