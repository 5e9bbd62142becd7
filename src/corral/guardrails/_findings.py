"""The vocabulary every scanner speaks: findings, actions, severities and the scan result.

Scanners (``_pii``, ``_secrets``, ``_injection``, ``_unicode``, ``classifier``) produce
:class:`Finding` objects; the engine and the stream scanner turn them into a :class:`ScanResult`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["block", "redact", "log"]
Outcome = Literal["allow", "log", "redact", "block"]
Severity = Literal["low", "medium", "high", "critical"]
Category = Literal["pii", "secrets", "injection", "unicode", "classifier"]

ACTIONS: tuple[Action, ...] = ("block", "redact", "log")
# Stronger outcomes win when findings disagree; "allow" means nothing was found.
OUTCOME_RANK: dict[Outcome, int] = {"allow": 0, "log": 1, "redact": 2, "block": 3}


@dataclass(frozen=True)
class Finding:
    """One detected span. ``span`` indexes the original text at ``location`` (for example
    ``messages[2].content``, or ``stream`` for output)."""

    type: str
    category: Category
    span: tuple[int, int]
    severity: Severity
    action: Action
    location: str = ""
    detail: str = ""

    def placeholder(self) -> str:
        return f"[REDACTED:{self.type}]"


@dataclass(frozen=True)
class ScanResult:
    """What a scan found and did.

    ``action`` is the strongest action any finding asked for (``allow`` when none did);
    ``redacted_text`` is the text of every scanned message with redactable spans replaced, joined
    by newlines, and ``messages`` are the scanned messages with their content redacted.
    """

    findings: tuple[Finding, ...]
    action: Outcome
    redacted_text: str
    messages: tuple[dict[str, object], ...] = ()

    @property
    def blocked(self) -> bool:
        return self.action == "block"


def strongest(findings: tuple[Finding, ...] | list[Finding]) -> Outcome:
    outcome: Outcome = "allow"
    for finding in findings:
        if OUTCOME_RANK[finding.action] > OUTCOME_RANK[outcome]:
            outcome = finding.action
    return outcome
