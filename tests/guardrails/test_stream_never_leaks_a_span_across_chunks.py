"""StreamScanner: whatever the chunking, the released text is the whole-text redaction, and a
secret never reaches the caller in pieces."""

from __future__ import annotations

import guardrail_samples as samples
import pytest

from corral.guardrails import OUTPUT_DEFAULTS, GuardrailConfig, Guardrails

GUARD = Guardrails(OUTPUT_DEFAULTS)
SECRETS = (
    samples.OPENAI_KEY,
    samples.JWT,
    samples.PEM,
    samples.AWS_SECRET,
    samples.AWS_KEY_ID,
    samples.VISA,
    "jane.doe@example.org",
    "+44 20 7946 0958",
)


def run_stream(chunks: list[str], guard: Guardrails = GUARD) -> tuple[list[str], str]:
    scanner = guard.stream()
    released = [scanner.feed(chunk) for chunk in chunks]
    released.append(scanner.flush())
    return released, "".join(released)


def test_whole_text_redaction_hides_every_sample_secret() -> None:
    expected = GUARD.scan_text(samples.LEAKY_ANSWER).redacted_text
    for secret in SECRETS:
        assert secret not in expected
    assert expected.count("[REDACTED:") == 8


def test_every_single_split_point_releases_the_whole_text_redaction() -> None:
    text = samples.LEAKY_ANSWER
    expected = GUARD.scan_text(text).redacted_text
    for cut in range(len(text) + 1):
        released, joined = run_stream([text[:cut], text[cut:]])
        assert joined == expected, f"split at {cut}"
        for piece in released:
            for secret in SECRETS:
                # No piece carries a fragment of a secret long enough to matter.
                assert secret[:12] not in piece, f"split at {cut}"
                assert secret[-12:] not in piece, f"split at {cut}"


def test_character_by_character_stream_matches_whole_text() -> None:
    text = samples.LEAKY_ANSWER
    _, joined = run_stream(list(text))
    assert joined == GUARD.scan_text(text).redacted_text


@pytest.mark.parametrize("size", [2, 3, 5, 7, 16, 64])
def test_fixed_size_chunks_match_whole_text(size: int) -> None:
    text = samples.LEAKY_ANSWER * 2
    chunks = [text[i : i + size] for i in range(0, len(text), size)]
    _, joined = run_stream(chunks)
    assert joined == GUARD.scan_text(text).redacted_text


def test_findings_carry_absolute_stream_offsets() -> None:
    text = samples.LEAKY_ANSWER
    scanner = GUARD.stream()
    for i in range(0, len(text), 10):
        scanner.feed(text[i : i + 10])
    scanner.flush()
    whole = GUARD.scan_text(text).findings
    assert [(f.type, f.span) for f in scanner.findings] == [(f.type, f.span) for f in whole]


def test_plain_prose_is_released_with_bounded_hold_back() -> None:
    scanner = GUARD.stream()
    released = "".join(
        scanner.feed("The quick brown fox jumps over the lazy dog. ") for _ in range(100)
    )
    # Only an email's local part (64 characters before a possible "@") is held back in prose.
    assert scanner.held_back <= 80
    assert len(released) >= 100 * 45 - 80


def test_block_stops_the_stream_before_the_secret() -> None:
    guard = Guardrails(GuardrailConfig(injection=None, secrets="block"))
    text = samples.LEAKY_ANSWER
    for cut in (0, 30, 60, 61, 62, 100, len(text)):
        _, joined = run_stream([text[:cut], text[cut:]], guard)
        assert joined == "Sure! Here is the config you asked for.\nexport OPENAI_API_KEY="
        assert all(secret not in joined for secret in SECRETS)


def test_feed_after_flush_is_an_error() -> None:
    scanner = GUARD.stream()
    scanner.flush()
    with pytest.raises(RuntimeError, match="already flushed"):
        scanner.feed("x")


def test_a_whole_answer_fed_at_once_is_the_whole_text_redaction() -> None:
    text = samples.LEAKY_ANSWER
    scanner = GUARD.stream()
    assert scanner.feed_whole(text) == GUARD.scan_text(text).redacted_text
    assert len(scanner.findings) == 8
    blocking = Guardrails(GuardrailConfig(injection=None, secrets="block")).stream()
    released = blocking.feed_whole(text)
    assert released == "Sure! Here is the config you asked for.\nexport OPENAI_API_KEY="
    assert blocking.blocked
    with pytest.raises(RuntimeError, match="already flushed"):
        scanner.feed_whole("x")
