"""A detector: one combined regex whose named alternatives are rules, plus per-rule validators.

Every scanner that reports spans (PII, secrets, injection phrases, invisible Unicode) is built
from detectors, and both the whole-text engine and the stream scanner walk them with
:meth:`Detector.matches`, so a stream yields exactly the findings a whole-text scan would.

Two properties keep the stream exact, and every detector declares them:

- ``max_span``: no match is longer, and the regex never looks further than ``lookahead`` past a
  match, so a match starting at ``p`` is settled once ``p + max_span + lookahead`` characters
  have arrived;
- ``anchors``: optional literal prefixes every match starts with; a detector with anchors only
  holds back text from an anchor on, so a long-match kind (PEM blocks, JWTs) does not make the
  stream hold back kilobytes of ordinary text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from corral.guardrails._findings import Category, Severity


@dataclass(frozen=True)
class Rule:
    """One named alternative. ``group`` reports a sub-group's span (the value of ``key=value``);
    ``report=False`` consumes text that must not be flagged (an emoji flag's tag characters)."""

    type: str
    severity: Severity
    validate: Callable[[str], bool] | None = None
    group: str | None = None
    report: bool = True


@dataclass(frozen=True)
class Match:
    rule: Rule
    start: int
    end: int
    match_start: int
    match_end: int


class Detector:
    def __init__(
        self,
        category: Category,
        rules: dict[str, tuple[str, Rule]],
        *,
        max_span: int,
        lookahead: int = 1,
        anchors: tuple[str, ...] = (),
        flags: int = 0,
    ) -> None:
        self.category: Category = category
        self.rules = {name: rule for name, (_, rule) in rules.items()}
        self.pattern = re.compile(
            "|".join(f"(?P<{name}>{source})" for name, (source, _) in rules.items()), flags
        )
        self.max_span = max_span
        self.lookahead = lookahead
        self.anchors = anchors

    @property
    def types(self) -> frozenset[str]:
        return frozenset(rule.type for rule in self.rules.values() if rule.report)

    def matches(self, text: str, pos: int = 0) -> Iterator[Match]:
        """Leftmost matches from ``pos`` on; a candidate its validator rejects is retried one
        character later, so the result at a position never depends on where scanning began."""
        search = self.pattern.search
        while True:
            found = search(text, pos)
            if found is None:
                return
            name = found.lastgroup
            assert name is not None  # every alternative is a named group
            rule = self.rules[name]
            start, end = found.span(rule.group) if rule.group else found.span()
            if rule.validate is not None and not rule.validate(text[start:end]):
                pos = found.start() + 1
                continue
            yield Match(rule, start, end, found.start(), found.end())
            pos = found.end() if found.end() > found.start() else found.start() + 1

    def settled_before(self, text: str, pos: int) -> int:
        """The first position at which a match might still change when more text arrives."""
        horizon = len(text) - self.max_span - self.lookahead
        if not self.anchors:
            return max(horizon, pos)
        frontier = len(text)
        for anchor in self.anchors:
            # A partial anchor at the very end could still become a match start.
            frontier = min(frontier, len(text) - len(anchor) + 1)
            hit = text.find(anchor, max(horizon, pos))
            if hit != -1:
                frontier = min(frontier, hit)
        return max(frontier, pos)
