"""GuardrailConfig picks each scanner's action, per-type overrides win, bad values fail early."""

from __future__ import annotations

from typing import Any

import guardrail_samples as samples
import pytest

from corral.guardrails import GuardrailConfig, GuardrailConfigError, Guardrails

TEXT = f"Mail bob@example.com, key {samples.GITHUB_TOKEN}, from 10.0.0.7"


def test_defaults_redact_pii_and_secrets() -> None:
    result = Guardrails().scan_text(TEXT)
    assert result.action == "redact"
    assert result.redacted_text == (
        "Mail [REDACTED:email], key [REDACTED:github_token], from [REDACTED:ip_address]"
    )


def test_log_reports_findings_but_keeps_the_text() -> None:
    result = Guardrails(GuardrailConfig(pii="log", secrets="log")).scan_text(TEXT)
    assert result.action == "log"
    assert result.redacted_text == TEXT
    assert {f.type for f in result.findings} == {"email", "github_token", "ip_address"}


def test_block_wins_over_redact() -> None:
    result = Guardrails(GuardrailConfig(secrets="block")).scan_text(TEXT)
    assert result.action == "block"
    assert result.blocked
    assert samples.GITHUB_TOKEN not in result.redacted_text


def test_type_override_beats_the_scanner_action() -> None:
    config = GuardrailConfig(type_actions={"ip_address": "log"})
    result = Guardrails(config).scan_text(TEXT)
    assert result.redacted_text.endswith("from 10.0.0.7")
    assert {f.type: f.action for f in result.findings}["ip_address"] == "log"


def test_disabled_scanner_finds_nothing() -> None:
    result = Guardrails(GuardrailConfig(pii=None)).scan_text(TEXT)
    assert [f.type for f in result.findings] == ["github_token"]


def test_clean_text_is_allowed_unchanged() -> None:
    result = Guardrails().scan_text("Just a normal question about soup.")
    assert (result.action, result.findings, result.redacted_text) == (
        "allow",
        (),
        "Just a normal question about soup.",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pii": "drop"}, "GuardrailConfig.pii: 'drop' is not one of"),
        ({"type_actions": {"emial": "log"}}, "type_actions['emial']: unknown finding type"),
        ({"type_actions": {"email": "hide"}}, "type_actions['email']: 'hide' is not one of"),
        ({"injection_threshold": 0}, "GuardrailConfig.injection_threshold: 0 must be"),
        ({"secret_min_entropy": 9}, "GuardrailConfig.secret_min_entropy: 9 must be"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(GuardrailConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        GuardrailConfig(**kwargs)
