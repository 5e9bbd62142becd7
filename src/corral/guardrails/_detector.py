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

Where every match starts at a key (``key_back == 0``), only the alternatives that can start with
the character found there are tried: each rule's top-level alternatives are sorted at build time
by the characters a match of them can start with (read from Python's own parse of the regex),
and one regex per character keeps only those, in their order and under their rule's name, so
the leftmost-first choice and every reported span stay the same. The prompt-injection detector
then tries 1 to 12 (about 5) of its 59 alternatives at a cue word instead of all of them.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from corral.guardrails._findings import Category, Severity

try:
    # Private, but the parser ``re`` itself compiles with (Python 3.11+). Without it every
    # alternative counts as able to start anywhere, which only turns the dispatch off.
    _regex_parser: Any = importlib.import_module("re._parser")
    _regex_constants: Any = importlib.import_module("re._constants")
except ImportError:  # pragma: no cover - Python 3.11+ has both
    _regex_parser = _regex_constants = None

_REFERENCE = re.compile(r"\\[1-9]|\(\?P=|\(\?\(")
"""A backreference or a group-conditional (or an octal escape in a class: a false alarm that
only keeps the full pattern running)."""

_WIDEST_RANGE = 256
"""A character class range wider than this counts as "any character" (keeps the tables small)."""


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
        # The regex to try at a key hit, by the character there (None: dispatch off, and the
        # full pattern runs; tests turn it off to compare). Only used where matches start at
        # the key, and never with the IGNORECASE twin, whose literals match other characters.
        self._by_first_char: dict[str, re.Pattern[str]] | None = None
        self._unknown_start: re.Pattern[str] | None = None  # rules that may start with any char
        if key is not None and key_back == 0:
            self._build_dispatch(rules, flags)

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
        by_first_char = self._by_first_char if pattern is self.pattern else None
        while (hit := key.search(text, pos)) is not None:
            if by_first_char is not None:
                at = hit.start()
                candidates = by_first_char.get(text[at : at + 1], self._unknown_start)
                found = candidates.match(text, at) if candidates is not None else None
            elif self.key_back == 0:
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

    def _build_dispatch(self, rules: dict[str, tuple[str, Rule]], flags: int) -> None:
        """Fill ``_by_first_char``: per character, the rules' alternatives that may start there.

        Dropping an alternative that cannot match at a position leaves ``pattern.match`` there
        unchanged: the alternatives left are tried in the same order, under the same names."""
        if _regex_parser is None:
            return
        alternatives: list[tuple[str, list[tuple[str, frozenset[str] | None]]]] = []
        for name, (source, rule) in rules.items():
            if _REFERENCE.search(source):
                return  # a numbered reference would point elsewhere once rules are dropped
            # A rule whose sub-group is reported stays whole, so the group is in every regex
            # the rule is part of.
            cuts = _top_level_alternatives(source) if rule.group is None else [source]
            for parts in (cuts, [source]):
                try:
                    starts = [_start_chars(part, flags) for part in parts]
                    break
                except re.error:
                    # A part that does not parse alone was not an alternative after all; a
                    # source that does not parse alone only reads inside the combined regex.
                    continue
            else:
                return
            alternatives.append((name, list(zip(parts, starts, strict=True))))

        compiled: dict[str, re.Pattern[str] | None] = {}

        def regex_for(char: str | None) -> re.Pattern[str] | None:
            kept = []
            for name, parts in alternatives:
                sources = [part for part, start in parts if start is None or char in start]
                if sources:
                    kept.append(f"(?:{'|'.join(sources)})(?P<{name}>)")
            combined = "|".join(kept)
            if combined not in compiled:
                compiled[combined] = re.compile(combined, flags) if kept else None
            return compiled[combined]

        chars = {char for _, parts in alternatives for _, start in parts for char in start or ()}
        by_first_char = {char: regex_for(char) for char in sorted(chars)}
        self._by_first_char = {char: regex for char, regex in by_first_char.items() if regex}
        self._unknown_start = regex_for(None)

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


def _top_level_alternatives(source: str) -> list[str]:
    """``source`` cut at each ``|`` outside groups, classes and escapes: ``a|b(c|d)`` -> ``a``,
    ``b(c|d)``. A comment (``#``) could hide a bracket, so a source with one stays whole."""
    if "#" in source:
        return [source]
    parts: list[str] = []
    depth, start, index, in_class = 0, 0, 0, False
    while index < len(source):
        char = source[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            # A "]" right after "[" or "[^" is a member, not the end of the class.
            index += 2 if source.startswith("^", index + 1) else 1
            index += 1 if source.startswith("]", index) else 0
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(source[start:index])
            start = index + 1
        index += 1
    parts.append(source[start:])
    return parts


@functools.lru_cache(maxsize=1024)
def _start_chars(source: str, flags: int) -> frozenset[str] | None:
    """The characters a match of ``source`` can start with; None: any. Cached, as every
    Guardrails builds the same detectors."""
    parsed = _regex_parser.parse(source, flags)
    chars, can_be_empty = _sequence_first_chars(parsed, parsed.state.flags)
    return None if chars is None or can_be_empty else frozenset(chars)


def _sequence_first_chars(items: Any, flags: int) -> tuple[set[str] | None, bool]:
    """(first characters or None for any, whether the sequence can match the empty string)."""
    chars: set[str] = set()
    for op, arg in items:
        first, can_be_empty = _item_first_chars(op, arg, flags)
        if first is None:
            return None, False
        chars |= first
        if not can_be_empty:
            return chars, False
    return chars, True


def _item_first_chars(op: Any, arg: Any, flags: int) -> tuple[set[str] | None, bool]:
    c = _regex_constants
    if op in (c.AT, c.ASSERT, c.ASSERT_NOT):
        return set(), True  # zero width: the next item consumes the first character
    if op is c.LITERAL:
        # Under IGNORECASE a literal also matches characters its case change does not list
        # (the Kelvin sign matches "k"), so it counts as any.
        return (None if flags & re.IGNORECASE else {chr(arg)}), False
    if op is c.IN:
        return _class_chars(arg, flags), False
    if op is c.BRANCH:
        chars: set[str] = set()
        can_be_empty = False
        for branch in arg[1]:
            first, branch_can_be_empty = _sequence_first_chars(branch, flags)
            if first is None:
                return None, False
            chars |= first
            can_be_empty = can_be_empty or branch_can_be_empty
        return chars, can_be_empty
    if op is c.SUBPATTERN:
        _group, add_flags, del_flags, body = arg
        return _sequence_first_chars(body, (flags | add_flags) & ~del_flags)
    if op is c.ATOMIC_GROUP:
        return _sequence_first_chars(arg, flags)
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
        least, _most, body = arg
        first, can_be_empty = _sequence_first_chars(body, flags)
        return first, can_be_empty or least == 0
    return None, False  # ANY, NOT_LITERAL, backreferences, conditionals: anything goes


def _class_chars(items: Any, flags: int) -> set[str] | None:
    if flags & re.IGNORECASE:
        return None
    chars: set[str] = set()
    for op, arg in items:
        if op is _regex_constants.LITERAL:
            chars.add(chr(arg))
        elif op is _regex_constants.RANGE and arg[1] - arg[0] < _WIDEST_RANGE:
            chars.update(map(chr, range(arg[0], arg[1] + 1)))
        else:
            return None  # a negated class, a category like \w, a wide range
    return chars


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
