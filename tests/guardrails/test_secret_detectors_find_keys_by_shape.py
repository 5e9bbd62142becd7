"""Provider keys, private keys, JWTs and high-entropy assignments; prose that merely looks
similar is left alone."""

from __future__ import annotations

import guardrail_samples as samples
import pytest

from corral.guardrails import Guardrails

GUARD = Guardrails()


def found(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.span[0] : f.span[1]]) for f in GUARD.scan_text(text).findings]


@pytest.mark.parametrize(
    ("value", "finding_type"),
    [
        (samples.OPENAI_KEY, "api_key"),
        ("sk-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe", "api_key"),
        (samples.ANTHROPIC_KEY, "api_key"),
        (samples.AWS_KEY_ID, "aws_access_key_id"),
        (samples.GITHUB_TOKEN, "github_token"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEF", "github_token"),
        (samples.SLACK_TOKEN, "slack_token"),
        (samples.GOOGLE_KEY, "google_api_key"),
        (samples.JWT, "jwt"),
        (samples.PEM, "private_key"),
    ],
)
def test_provider_key_is_found_whole(value: str, finding_type: str) -> None:
    text = f"use this: {value} (do not share)"
    assert found(text) == [(finding_type, value)]


@pytest.mark.parametrize(
    "assignment",
    [
        f"aws_secret_access_key = {samples.AWS_SECRET}",
        f'AWS_SECRET_ACCESS_KEY="{samples.AWS_SECRET}"',
    ],
)
def test_aws_secret_is_found_by_its_assignment(assignment: str) -> None:
    assert found(assignment) == [("aws_secret_access_key", samples.AWS_SECRET)]


@pytest.mark.parametrize(
    "text",
    [
        'api_key = "f9a8B7c6D5e4F3g2H1i0"',
        "password: Xk29vLq83mZpR4tW",
        "client_secret=9fK2mQ7xL4pR8sT1vW3y",
    ],
)
def test_generic_assignment_redacts_only_the_value(text: str) -> None:
    ((finding_type, value),) = found(text)
    assert finding_type == "secret"
    assert text.endswith(value) or text.endswith(value + '"')
    assert "=" not in value
    assert ":" not in value


@pytest.mark.parametrize(
    "near_miss",
    [
        "we use sk-learn-compatible-estimator-design everywhere",
        "AKIA1234 is too short",
        "ghp_short",
        "password: hunter2",
        "key = my_dictionary_key_name_here",
        "token = tokenizer_configuration_file",
        "eyJhbGciOiJIUzI1NiJ9 is only a header",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",  # noqa: E501
        "-----BEGIN RSA PRIVATE KEY----- with no body and no end",
    ],
)
def test_look_alike_is_not_a_secret(near_miss: str) -> None:
    assert found(near_miss) == []
