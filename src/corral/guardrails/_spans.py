"""Turning detector matches into findings and redacted text; shared by the engine and the stream.

Overlapping spans (a JWT inside a ``token=`` assignment, an email inside a URL-ish string) are
merged into one placeholder named after the earliest, longest finding, so a redacted text never
shows half a secret between two placeholders.
"""

from __future__ import annotations

from collections.abc import Iterable

from corral.guardrails._detector import Detector, Match
from corral.guardrails._findings import Finding
from corral.guardrails.config import GuardrailConfig


def to_finding(
    detector: Detector, match: Match, config: GuardrailConfig, offset: int, location: str
) -> Finding | None:
    action = config.action_for(detector.category, match.rule.type)
    if action is None or not match.rule.report:
        return None
    return Finding(
        type=match.rule.type,
        category=detector.category,
        span=(match.start + offset, match.end + offset),
        severity=match.rule.severity,
        action=action,
        location=location,
    )


def redact(text: str, findings: Iterable[Finding], offset: int = 0) -> str:
    """Replace every blocking or redacting span of ``text`` (which starts at ``offset``)."""
    spans = sorted(
        (f.span[0] - offset, -(f.span[1] - offset), f.type) for f in findings if f.action != "log"
    )
    if not spans:
        return text  # the usual clean text: nothing to cut or join
    pieces: list[str] = []
    cursor = 0
    index = 0
    while index < len(spans):
        start, negative_end, finding_type = spans[index]
        group_end = -negative_end
        index += 1
        while index < len(spans) and spans[index][0] < group_end:
            group_end = max(group_end, -spans[index][1])
            index += 1
        pieces.append(text[cursor:start])
        pieces.append(f"[REDACTED:{finding_type}]")
        cursor = group_end
    pieces.append(text[cursor:])
    return "".join(pieces)
