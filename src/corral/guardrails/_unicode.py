"""Invisible and bidirectional Unicode: characters a human reviewer cannot see but a model reads.

Zero-width characters split trigger words ("ig\u200bnore"), tag characters (U+E0000 block)
smuggle whole ASCII instructions invisibly, and bidi overrides reorder what a reviewer sees
("Trojan Source"). Legitimate uses are let through: the zero-width joiner inside emoji sequences
and Indic/Persian words (only a joiner between two ASCII letters is flagged) and the tag
characters that spell a subdivision flag such as England's.
"""

from __future__ import annotations

from corral.guardrails._detector import Detector, Rule

UNICODE_RULES: dict[str, tuple[str, Rule]] = {
    # Consumed, never reported: black flag + 2..6 lowercase tag letters/digits + cancel tag.
    "subdivision_flag": (
        "\U0001f3f4[\U000e0030-\U000e0039\U000e0061-\U000e007a]{2,6}\U000e007f",
        Rule("subdivision_flag", "low", report=False),
    ),
    "tag_characters": (
        "[\U000e0000-\U000e007f]{1,64}",
        Rule("tag_characters", "high"),
    ),
    "bidi_control": (
        "[\u202a-\u202e\u2066-\u2069]{1,64}",
        Rule("bidi_control", "high"),
    ),
    "zero_width": ("[\u200b\u2060\u180e\u2061-\u2064]{1,64}", Rule("zero_width", "medium")),
    # A byte-order mark anywhere but at the start of a text.
    "zero_width_bom": ("\ufeff(?<=[\\s\\S]\ufeff)", Rule("zero_width", "medium")),
    "zero_width_joiner": (
        "[\u200c\u200d](?<=[A-Za-z0-9][\u200c\u200d])[\u200c\u200d]{0,63}(?=[A-Za-z0-9])",
        Rule("zero_width", "medium"),
    ),
}


def unicode_detector() -> Detector:
    return Detector(
        "unicode",
        UNICODE_RULES,
        max_span=64,
        lookahead=1,
        key="[\U000e0000-\U000e007f\u202a-\u202e\u2066-\u2069\u200b-\u200d\u2060-\u2064"
        "\u180e\ufeff\U0001f3f4]",
    )
