"""``lockheed list --where``: a small condition language over locks (pure).

Grammar (keywords are lower case; ``and`` binds tighter than ``or``)::

    expr    := term ("or" term)*
    term    := factor ("and" factor)*
    factor  := "not" factor | "(" expr ")" | test
    test    := "acquired" | "held" | "free"
             | "tags" "contains" WORD
             | "expires" CMP DURATION        e.g. expires < 30s, expires >= 2m
             | "waiters" CMP NUMBER          e.g. waiters > 0
             | "holder" ("=" | "!=") WORD
             | "name" ("=" | "!=") WORD
    CMP     := "<" | "<=" | ">" | ">=" | "=" | "!="
    WORD    := letters, digits and . _ - / : @, or a quoted string ('x y' or "x y")
    DURATION:= a number with a unit: ms, s, m, h, d (e.g. 500ms, 30s, 1.5h)

``tags contains X`` and ``acquired`` (``held``; ``free`` is ``not acquired``)
are Go lockheed's condition vocabulary: an expression made of them, ``and``,
``or`` and ``not acquired`` maps onto a :class:`~lockheed.Condition`
(:meth:`Where.condition`). The other tests are the command line's own and
are evaluated on the listing. ``expires`` is the time left on the soonest live
lease (a free lock has none, so every ``expires`` test is false for it; a
lease that never expires is longer than any duration).

Failure semantics: a malformed expression raises :class:`WhereError` (a
:class:`~lockheed.LockError` and a ``ValueError``) whose message names the
problem and points at the bad token with its column and a caret; nothing is
listed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ._conditions import Condition, acquired, all_of, any_of, tags_contain
from ._errors import LockError

__all__ = ["Facts", "Where", "WhereError", "all_where", "parse_selector", "parse_where"]


class WhereError(LockError, ValueError):
    """A ``--where`` expression that cannot be read; ``column`` is 1-based."""

    def __init__(self, message: str, *, text: str = "", column: int = 1):
        super().__init__(message)
        self.text = text
        self.column = column

    def _kwargs(self) -> dict[str, object]:
        return {"text": self.text, "column": self.column}

    def __str__(self) -> str:
        return (
            f"{self.message} at column {self.column}:\n  {self.text}\n  {' ' * (self.column - 1)}^"
        )


@dataclass(frozen=True)
class Facts:
    """What ``--where`` can see of one lock."""

    name: str
    tags: frozenset[str]
    holders: tuple[str, ...]
    expires_in: float | None  # seconds left on the soonest live lease; inf: never; None: free
    waiters: int

    @property
    def acquired(self) -> bool:
        return bool(self.holders)


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "string", "op", "(", ")", "end"
    text: str
    column: int  # 1-based


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<op><=|>=|!=|==|<|>|=)
      | (?P<paren>[()])
      | (?P<string>"[^"]*"|'[^']*')
      | (?P<word>[A-Za-z0-9._/:@-]+)
      | (?P<bad>\S)
    )""",
    re.VERBOSE,
)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_KEYWORDS = {"and", "or", "not", "(", ")"}


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while True:
        m = _TOKEN.match(text, pos)
        if m is None or m.lastgroup is None:  # only blanks left
            out.append(_Token("end", "", len(text.rstrip()) + 1))
            return out
        column = m.start(m.lastgroup) + 1
        value = m.group(m.lastgroup)
        if m.lastgroup == "bad":
            if value in "\"'":
                raise WhereError("unterminated quoted string", text=text, column=column)
            raise WhereError(f"unexpected character {value!r}", text=text, column=column)
        if m.lastgroup == "string":
            out.append(_Token("string", value[1:-1], column))
        elif m.lastgroup == "paren":
            out.append(_Token(value, value, column))
        else:
            out.append(_Token(m.lastgroup, "=" if value == "==" else value, column))
        pos = m.end()


# ------------------------------------------------------------------ the tree


@dataclass(frozen=True)
class Where:
    """A parsed expression: ``matches(facts)``; ``condition()`` in Go's vocabulary."""

    kind: str  # "and", "or", "not", "acquired", "tags", "expires", "waiters", "holder", "name"
    children: tuple[Where, ...] = ()
    op: str = ""
    value: str | float = ""
    column: int = 1
    text: str = ""  # the whole expression, for errors

    def matches(self, facts: Facts) -> bool:
        kind = self.kind
        if kind == "and":
            return all(c.matches(facts) for c in self.children)
        if kind == "or":
            return any(c.matches(facts) for c in self.children)
        if kind == "not":
            return not self.children[0].matches(facts)
        if kind == "acquired":
            return facts.acquired
        if kind == "tags":
            return self.value in facts.tags
        if kind == "expires":
            if facts.expires_in is None:
                return False
            return _compare(facts.expires_in, self.op, float(self.value))
        if kind == "waiters":
            return _compare(float(facts.waiters), self.op, float(self.value))
        if kind == "holder":
            found = self.value in facts.holders
            return found if self.op == "=" else not found
        if kind == "name":
            same = facts.name == self.value
            return same if self.op == "=" else not same
        raise AssertionError(kind)  # pragma: no cover

    def condition(self) -> Condition:
        """This expression as a :class:`~lockheed.Condition` (Go lockheed's JSON
        vocabulary); :class:`WhereError` at the first part it cannot express."""
        return self._condition(negated=False)

    def _condition(self, negated: bool) -> Condition:
        kind = self.kind
        if kind == "not":
            return self.children[0]._condition(not negated)
        if kind in ("and", "or"):
            # De Morgan: not (a and b) = not a or not b
            parts = [c._condition(negated) for c in self.children]
            return all_of(*parts) if (kind == "and") != negated else any_of(*parts)
        if kind == "acquired":
            return acquired(not negated)
        if kind == "tags" and not negated:
            return tags_contain(str(self.value))
        what = "'not tags contains'" if kind == "tags" else f"{kind!r}"
        raise WhereError(
            f"{what} has no equivalent in Go lockheed's conditions "
            "(tags contains, acquired, and, or)",
            text=self.text,
            column=self.column,
        )


def _compare(left: float, op: str, right: float) -> bool:
    return {
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
        "=": left == right,
        "!=": left != right,
    }[op]


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    def error(self, message: str, token: _Token | None = None) -> WhereError:
        token = token or self.peek()
        return WhereError(message, text=self.text, column=token.column)

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        if token.kind != "end":
            self.at += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token.kind == "word" and token.text == word:
            self.at += 1
            return True
        return False

    def parse(self) -> Where:
        if self.peek().kind == "end":
            raise self.error("empty condition: expected a test such as 'acquired'")
        tree = self.expr()
        token = self.peek()
        if token.kind != "end":
            raise self.error(f"expected 'and', 'or' or the end, not {_shown(token)}", token)
        return tree

    def expr(self) -> Where:
        first = self.peek()
        parts = [self.term()]
        while self.keyword("or"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else self.node("or", tuple(parts), first)

    def term(self) -> Where:
        first = self.peek()
        parts = [self.factor()]
        while self.keyword("and"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else self.node("and", tuple(parts), first)

    def node(self, kind: str, children: tuple[Where, ...], token: _Token) -> Where:
        return Where(kind, children, column=token.column, text=self.text)

    def factor(self) -> Where:
        token = self.peek()
        if self.keyword("not"):
            return self.node("not", (self.factor(),), token)
        if token.kind == "(":
            self.take()
            inner = self.expr()
            close = self.peek()
            if close.kind != ")":
                raise self.error(f"expected ')' to close the '(' at column {token.column}")
            self.take()
            return inner
        return self.test()

    def test(self) -> Where:
        token = self.take()
        word = token.text if token.kind == "word" else None
        if word in ("acquired", "held"):
            return Where("acquired", column=token.column, text=self.text)
        if word == "free":
            held = Where("acquired", column=token.column, text=self.text)
            return self.node("not", (held,), token)
        if word == "tags":
            if not self.keyword("contains"):
                raise self.error(f"expected 'contains' after 'tags', not {_shown(self.peek())}")
            return Where("tags", value=self.value("a tag"), column=token.column, text=self.text)
        if word == "expires":
            op = self.operator(word)
            return Where(
                "expires", op=op, value=self.duration(), column=token.column, text=self.text
            )
        if word == "waiters":
            op = self.operator(word)
            return Where("waiters", op=op, value=self.number(), column=token.column, text=self.text)
        if word in ("holder", "name"):
            op = self.operator(word, ("=", "!="))
            value = self.value("an instance ID" if word == "holder" else "a lock name")
            return Where(word, op=op, value=value, column=token.column, text=self.text)
        expected = "a test: acquired, held, free, tags, expires, waiters, holder, name, not or '('"
        raise self.error(f"expected {expected}; not {_shown(token)}", token)

    def operator(
        self, field: str, allowed: tuple[str, ...] = ("<", "<=", ">", ">=", "=", "!=")
    ) -> str:
        token = self.peek()
        if token.kind != "op" or token.text not in allowed:
            choices = " ".join(allowed)
            raise self.error(f"expected one of {choices} after {field!r}, not {_shown(token)}")
        return self.take().text

    def value(self, what: str) -> str:
        token = self.peek()
        if token.kind == "string" or (token.kind == "word" and token.text not in _KEYWORDS):
            return self.take().text
        raise self.error(f"expected {what}, not {_shown(token)}")

    def duration(self) -> float:
        token = self.peek()
        m = _DURATION.fullmatch(token.text) if token.kind == "word" else None
        if m is None:
            raise self.error(
                f"expected a duration such as 30s, 500ms, 2m or 1h, not {_shown(token)}"
            )
        self.take()
        return float(m.group(1)) * _UNITS[m.group(2)]

    def number(self) -> float:
        token = self.peek()
        try:
            value = float(token.text) if token.kind == "word" else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise self.error(f"expected a number, not {_shown(token)}")
        self.take()
        return value


def _shown(token: _Token) -> str:
    return "the end" if token.kind == "end" else repr(token.text)


def parse_where(text: str) -> Where:
    """Parse a ``--where`` expression; :class:`WhereError` points at the bad token."""
    return _Parser(text).parse()


def all_where(parts: list[Where]) -> Where | None:
    """The ``and`` of ``parts`` (None when there are none)."""
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Where("and", tuple(parts))


def parse_selector(text: str) -> Where:
    """``-l``: comma-separated tags the lock must have; ``!tag``: must not have."""
    parts: list[Where] = []
    column = 1
    for item in text.split(","):
        word = item.strip()
        at = column + len(item) - len(item.lstrip())
        negated = word.startswith("!")
        tag = word[1:].strip() if negated else word
        if not tag or not re.fullmatch(r"[A-Za-z0-9._/:@-]+", tag):
            raise WhereError("expected a tag or !tag", text=text, column=at)
        test = Where("tags", value=tag, column=at, text=text)
        parts.append(Where("not", (test,), column=at, text=text) if negated else test)
        column += len(item) + 1
    tree = all_where(parts)
    assert tree is not None
    return tree
