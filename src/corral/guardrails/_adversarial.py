"""Adversarial-suffix cue: the token salad that GCG-style optimisers append to a harmful request.

A GCG suffix (Zou et al., 2023) is found by gradient search over tokens, not written, so it reads
as word salad studded with unbalanced brackets: ``... without getting caught kein Sommer [ enem
GND follow across lemma [ dois]=setAttribute^{+sizeof ... rencontre [``. Nothing else in the
request says "attack", which is why the phrase heuristics in ``_injection`` never see it.

The cue is deliberately narrow so prose and code do not trip it: from a lone ``[`` (one with
white space after it), the next few hundred characters must hold at least three lone opening
brackets and at least two more opening than closing ones (square, curly and round together).
Code closes what it opens (``[ [1, 2], [3, 4] ]`` balances), so does maths (``[ a, b )``), and
prose almost never has a bracket standing alone.
It is a strong cue: one such run flags the input.

Part of the injection scanner (``_injection.injection_detectors``), so it only ever judges whole
inputs, never streamed output.
"""

from __future__ import annotations

from corral.guardrails._detector import Detector, Rule

# How far past the first lone bracket a suffix is read; GCG suffixes are 20-40 tokens.
_REGION_CHARS = 240
_MIN_LONE_OPENERS = 3
_MIN_UNCLOSED = 2
_LONE_OPENERS = frozenset("[{(")


def _looks_like_token_salad(region: str) -> bool:
    lone_openers = sum(1 for token in region.split() if token in _LONE_OPENERS)
    unclosed = sum(map(region.count, "[{(")) - sum(map(region.count, "]})"))
    return lone_openers >= _MIN_LONE_OPENERS and unclosed >= _MIN_UNCLOSED


ADVERSARIAL_RULES = {
    "adversarial_suffix": (
        # A lone "[", a second lone "[" within 120 characters with no "]" between, then the rest
        # of the line (up to the region's end) for the validator to weigh.
        r"\[\s(?:[^\]\n]{0,120}?\s)?\[(?=\s|$)[^\n]{0," + str(_REGION_CHARS) + "}",
        Rule("adversarial_suffix", "high", _looks_like_token_salad),
    ),
}


def adversarial_detector() -> Detector:
    return Detector(
        "injection",
        ADVERSARIAL_RULES,
        max_span=2 + 120 + 2 + _REGION_CHARS,
        lookahead=1,
        key=r"\[\s",
        key_width=2,
    )
