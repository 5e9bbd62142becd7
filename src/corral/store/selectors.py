"""Kubernetes label selectors: parsed once, matched against every listed or watched object.

``list`` and ``watch`` take a selector string (``team=search,tier!=gpu,env in (dev,prod),!old``);
both backends filter with the same matcher, so selector semantics live only here. The grammar and
meaning follow ``k8s.io/apimachinery/pkg/labels``: comma means AND, ``!=`` and ``notin`` also
match objects without the label, and an empty selector matches everything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from corral.api.errors import BadRequest
from corral.api.objects import label_key_problem, label_value_problem

Operator = Literal["=", "!=", "in", "notin", "exists", "!"]

# One token at a time: operators first so "!=" wins over "!", then words (keys, values and the
# in/notin keywords share the label character set), then punctuation.
_TOKEN = re.compile(r"\s*(?:(==|!=|=|!|\(|\)|,)|([A-Za-z0-9][-A-Za-z0-9_./]*)|(\S))")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "in"):
            return present and labels[self.key] in self.values
        # "!=" and "notin" match objects that lack the key, as Kubernetes does.
        return not present or labels[self.key] not in self.values


@dataclass(frozen=True)
class LabelSelector:
    """A parsed selector: every requirement must hold."""

    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)

    @property
    def is_empty(self) -> bool:
        return not self.requirements


@dataclass(frozen=True)
class _Token:
    text: str
    kind: Literal["op", "word", "end"]
    position: int


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0

    def fail(self, token: _Token, expected: str) -> BadRequest:
        found = "end of selector" if token.kind == "end" else repr(token.text)
        return BadRequest(
            f"invalid label selector {self.text!r}: expected {expected} at position "
            f"{token.position}, found {found}"
        )

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def parse(self) -> LabelSelector:
        if self.peek().kind == "end":
            return LabelSelector(())
        requirements = [self.requirement()]
        while self.peek().kind != "end":
            token = self.take()
            if token.text != ",":
                raise self.fail(token, "',' between requirements")
            requirements.append(self.requirement())
        return LabelSelector(tuple(requirements))

    def requirement(self) -> Requirement:
        token = self.take()
        if token.text == "!":
            return Requirement(self.key(self.take()), "!")
        key = self.key(token)
        operator = self.peek()
        if operator.kind == "end" or operator.text == ",":
            return Requirement(key, "exists")
        self.take()
        if operator.text in ("=", "=="):
            return Requirement(key, "=", frozenset({self.value()}))
        if operator.text == "!=":
            return Requirement(key, "!=", frozenset({self.value()}))
        if operator.kind == "word" and operator.text in ("in", "notin"):
            return Requirement(key, "in" if operator.text == "in" else "notin", self.value_set())
        raise self.fail(operator, "'=', '==', '!=', 'in', 'notin', ',' or the end")

    def key(self, token: _Token) -> str:
        if token.kind != "word":
            raise self.fail(token, "a label key")
        problem = label_key_problem(token.text)
        if problem:
            raise BadRequest(
                f"invalid label selector {self.text!r} at position {token.position}: {problem}"
            )
        return token.text

    def value(self) -> str:
        token = self.peek()
        # An empty value (``a=``) is legal and matches the label set to "".
        if token.kind == "end" or token.text in (",", ")"):
            return ""
        self.take()
        if token.kind != "word":
            raise self.fail(token, "a label value")
        problem = label_value_problem(token.text)
        if problem:
            raise BadRequest(
                f"invalid label selector {self.text!r} at position {token.position}: {problem}"
            )
        return token.text

    def value_set(self) -> frozenset[str]:
        opening = self.take()
        if opening.text != "(":
            raise self.fail(opening, "'(' opening the value set")
        values = [self.value()]
        while True:
            token = self.take()
            if token.text == ")":
                break
            if token.text != ",":
                raise self.fail(token, "',' or ')' in the value set")
            values.append(self.value())
        if values == [""]:
            raise BadRequest(
                f"invalid label selector {self.text!r}: the value set at position "
                f"{opening.position} is empty; 'in' and 'notin' need at least one value"
            )
        return frozenset(values)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # only trailing whitespace is left
            break
        op, word, other = match.groups()
        start = match.start(match.lastindex or 0)
        if other is not None:
            raise BadRequest(
                f"invalid label selector {text!r}: unexpected character {other!r} at position "
                f"{start}"
            )
        tokens.append(_Token(op or word or "", "op" if op else "word", start))
        position = match.end()
    tokens.append(_Token("", "end", len(text)))
    return tokens


@lru_cache(maxsize=512)
def parse_selector(text: str) -> LabelSelector:
    """Parse a Kubernetes label selector; raise BadRequest naming the position of a problem."""
    return _Parser(text).parse()


def selector_or_none(text: str | None) -> LabelSelector | None:
    """The parsed selector, or None when there is nothing to filter on."""
    if text is None:
        return None
    selector = parse_selector(text)
    return None if selector.is_empty else selector
