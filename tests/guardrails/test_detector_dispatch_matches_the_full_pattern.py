"""Where matches start at a key, a detector only tries the rule alternatives that can start with
the character there (first-character dispatch); that shortcut must find exactly what the full
combined regex finds: the same rules, spans and order, on every detector the guardrails build."""

from __future__ import annotations

import copy

import guardrail_samples as samples
import pytest

from corral.guardrails._detector import (
    Detector,
    Match,
    Rule,
    _start_chars,
    _top_level_alternatives,
)
from corral.guardrails._injection import injection_detectors
from corral.guardrails._pii import all_pii_detectors
from corral.guardrails._secrets import all_secret_detectors
from corral.guardrails._unicode import unicode_detector

DETECTORS = [
    *all_pii_detectors(),
    *all_secret_detectors(3.0),
    unicode_detector(),
    *injection_detectors(),
]


def full_pattern(detector: Detector) -> Detector:
    clone = copy.copy(detector)
    clone._by_first_char = None
    return clone


TEXTS = samples.dataset_texts() + samples.generated_texts(DETECTORS)


def spans(matches: list[Match]) -> list[tuple[str, int, int, int, int]]:
    return [(m.rule.type, m.start, m.end, m.match_start, m.match_end) for m in matches]


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: f"{d.category}:{next(iter(d.rules))}")
def test_dispatch_finds_what_the_full_pattern_finds(detector: Detector) -> None:
    full = full_pattern(detector)
    for text in TEXTS:
        found = list(detector.matches(text))
        assert found == list(full.matches(text)), text
        assert spans(found) == spans(list(full.matches(text))), text


def test_the_injection_detector_dispatches_and_the_texts_reach_its_rules() -> None:
    cues = injection_detectors()[0]
    assert cues._by_first_char, "no dispatch table: the comparison above would be vacuous"
    reached = {m.rule.type for text in TEXTS for m in cues.matches(text)}
    assert reached == {rule.type for rule in cues.rules.values()}
    assert any(len(text.lower()) != len(text) for text in TEXTS)  # the IGNORECASE twin runs too


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (r"(?<![a-z])abc", set("a")),
        (r"\bword\b", set("w")),
        (r"(?=ab)a", set("a")),
        (r"(?:x)?abc", set("xa")),
        (r"(?:x|y?)z", set("xyz")),
        (r"cat|dog", set("cd")),
        (r"[a-c_]+z", set("abc_")),
        (r"(?P<g>k)\d", set("k")),
        (r"x*", None),  # can match nothing: tried everywhere
        (r".abc", None),
        (r"[^a]b", None),
        (r"\wfoo", None),
        (r"(?i:a)b", None),  # "a" under IGNORECASE also matches "A"
        (r"[\x00-\U0010ffff]", None),  # too wide to list
    ],
)
def test_first_characters_of_a_rule(source: str, expected: set[str] | None) -> None:
    assert _start_chars(source, 0) == (None if expected is None else frozenset(expected))


def test_a_rule_is_cut_only_at_its_own_top_level_bars() -> None:
    source = r"a|b(c|d)|[|]|[]|]|\||(?:e|f)g"
    assert _top_level_alternatives(source) == ["a", "b(c|d)", "[|]", "[]|]", r"\|", "(?:e|f)g"]
    assert _top_level_alternatives("(?#a|b)c|d") == ["(?#a|b)c|d"]


def test_a_rule_with_an_unknown_start_is_tried_at_every_hit() -> None:
    rules = {
        "word": (r"\bcat", Rule("word", "low")),
        "anything": (r"\w(?<=[a-z])z", Rule("anything", "low")),
        "digit": (r"7", Rule("digit", "low")),
    }
    detector = Detector("injection", rules, max_span=8, key=r"[a-z0-9]")
    assert detector._by_first_char is not None
    assert detector._unknown_start is not None
    text = "qz cat 7 xz"
    found = [(m.rule.type, m.start, m.end) for m in detector.matches(text)]
    assert found == [("anything", 0, 2), ("word", 3, 6), ("digit", 7, 8), ("anything", 9, 11)]
    assert found == [(m.rule.type, m.start, m.end) for m in full_pattern(detector).matches(text)]


def test_a_backreference_turns_the_dispatch_off() -> None:
    # "\1" means the first rule's group in the combined regex; once rules are dropped it would
    # mean another group (or none), so a detector with a reference keeps the full pattern.
    rules = {
        "open": (r"(x)y", Rule("open", "low")),
        "again": (r"z\1", Rule("again", "low")),
    }
    detector = Detector("injection", rules, max_span=4, key=r"[xz]")
    assert detector._by_first_char is None
    assert [m.rule.type for m in detector.matches("xy z")] == ["open"]
