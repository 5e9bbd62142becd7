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
  stream hold back kilobytes of ordinary text;
- ``inside``: optionally, every character a match (and the character its lookahead reads) can
  hold. A match that may still grow must reach the end of the text received so far, so it
  starts after the last character not in ``inside``: an email detector then holds back the
  current word only, not the 64 characters a local part may span.

Speed comes from the shape of the combined regex (``re`` tries every alternative at every
position): each alternative starts with a consuming literal or character class, so the engine
rejects it on one character compare, and the rule's name is an empty group at its end (a leading
group or lookbehind would defeat that check). A detector whose matches all contain a rare
``key`` (the ``@`` of an email) runs the full regex only in a window around each key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

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
        key: str | None = None,
        key_back: int = 0,
        key_width: int = 1,
        fold_case: bool = False,
        inside: str | None = None,
    ) -> None:
        self.category: Category = category
        self.rules = {name: rule for name, (_, rule) in rules.items()}
        # Kept so a benchmark can compile each rule on its own and compare.
        self.sources = {name: source for name, (source, _) in rules.items()}
        self.pattern = re.compile(
            "|".join(f"(?:{source})(?P<{name}>)" for name, (source, _) in rules.items()), flags
        )
        # Every match starts at most ``key_back`` characters before an occurrence of ``key``.
        self.key = re.compile(key) if key is not None else None
        self._key_ignorecase = re.compile(key, re.IGNORECASE) if key is not None else None
        self.key_back = key_back
        self.key_width = key_width  # the longest text the key regex can match
        # Case-insensitive rules are written in lower case and run over ``text.lower()``:
        # re.IGNORECASE would turn every literal into a slower case-folding compare. Texts whose
        # length changes when lowered (a dotted capital I) use the IGNORECASE twin instead.
        self.fold_case = fold_case
        self._ignorecase = re.compile(self.pattern.pattern, flags | re.IGNORECASE)
        self.max_span = max_span
        self.lookahead = lookahead
        self.anchors = anchors
        self.inside = frozenset(inside) if inside is not None else None

    @property
    def types(self) -> frozenset[str]:
        return frozenset(rule.type for rule in self.rules.values() if rule.report)

    def matches(self, text: str, pos: int = 0) -> Iterator[Match]:
        """Leftmost matches from ``pos`` on; a candidate its validator rejects is retried one
        character later, so the result at a position never depends on where scanning began."""
        original = text
        pattern, key = self.pattern, self.key
        if self.fold_case:
            text = text.lower()
            if len(text) != len(original):
                text, pattern, key = original, self._ignorecase, self._key_ignorecase
        while True:
            found = (
                pattern.search(text, pos) if key is None else self._search(pattern, key, text, pos)
            )
            if found is None:
                return
            name = found.lastgroup
            assert name is not None  # every alternative is a named group
            rule = self.rules[name]
            start, end = found.span(rule.group) if rule.group else found.span()
            if rule.validate is not None and not rule.validate(original[start:end]):
                pos = found.start() + 1
                continue
            yield Match(rule, start, end, found.start(), found.end())
            pos = found.end() if found.end() > found.start() else found.start() + 1

    def _search(
        self, pattern: re.Pattern[str], key: re.Pattern[str], text: str, pos: int
    ) -> re.Match[str] | None:
        reach = self.max_span + self.lookahead + 1
        while (hit := key.search(text, pos)) is not None:
            if self.key_back == 0:
                found = pattern.match(text, hit.start())
            else:
                # The window ends far enough past the key that a match starting at or before it
                # is seen whole; one starting later belongs to a later key, found from there.
                start = max(pos, hit.start() - self.key_back)
                found = pattern.search(text, start, min(len(text), hit.start() + reach))
            if found is not None and found.start() <= hit.start():
                return found
            pos = hit.start() + 1
        return None

    def settled_before(self, text: str, pos: int) -> int:
        """The first position at which a match might still change when more text arrives."""
        frontier = self._settled_by_reach(text, pos)
        inside = self.inside
        if inside is None:
            return frontier
        # Walk back from the end to the last character no match can hold (usually a space a
        # few characters back): nothing before it can still change, once the characters a
        # lookahead past it reads have arrived too.
        for index in range(len(text) - max(self.lookahead, 1), frontier - 1, -1):
            if text[index] not in inside:
                return index + 1
        return frontier

    def _settled_by_reach(self, text: str, pos: int) -> int:
        horizon = len(text) - self.max_span - self.lookahead
        if self.key is None and not self.anchors:
            return max(horizon, pos)
        frontier = len(text)
        for anchor in self.anchors:
            # A partial anchor at the very end could still become a match start.
            frontier = min(frontier, len(text) - len(anchor) + 1)
            hit = text.find(anchor, max(horizon, pos))
            if hit != -1:
                frontier = min(frontier, hit)
        if self.key is not None:
            # A match needs a key at most key_back after its start: one already here, or one
            # still arriving at the end.
            frontier = min(frontier, len(text) - self.key_width + 1 - self.key_back)
            hit_at = self.key.search(text, max(horizon, pos))
            if hit_at is not None:
                frontier = min(frontier, hit_at.start() - self.key_back)
        return max(frontier, pos)


def word_alternation(words: Iterable[str]) -> str:
    """A regex matching any of ``words`` (longest first), factored by common prefixes.

    ``re`` tries the alternatives of a flat ``a|b|c`` one after another at every position; the
    factored form rejects a position after its first character in most cases (about twice as
    fast over prose for the ~150 cue words of the injection key)."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + emit(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        ends_here = "" in node
        if len(branches) == 1 and not ends_here:
            return branches[0]
        body = "(?:" + "|".join(branches) + ")"
        return body + "?" if ends_here else body

    return emit(trie)
