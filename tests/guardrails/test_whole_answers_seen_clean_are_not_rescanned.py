"""A whole (not streamed) answer found clean by an output scanner is remembered by its
``Guardrails``: the next identical answer is released unscanned, while answers with findings are
screened, redacted and reported every time, and streamed chunks never take the shortcut."""

from __future__ import annotations

import pytest

from corral.guardrails import OUTPUT_DEFAULTS, Guardrails
from corral.guardrails._detector import Detector
from corral.guardrails.stream import CLEAN_TEXT_MAX_CHARS, CLEAN_TEXTS_KEPT

pytestmark = pytest.mark.timeout(30)

GREETING = "Hello! How can I help you today?"
LEAKY = "Sure, mail jane.doe@example.com and use key AKIAIOSFODNN7EXAMPLE for it."


def counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text a detector is run over."""
    seen: list[str] = []
    real = Detector.matches

    def matches(self: Detector, text: str, start: int = 0):  # type: ignore[no-untyped-def]
        seen.append(text)
        return real(self, text, start)

    monkeypatch.setattr(Detector, "matches", matches)
    return seen


def test_a_clean_answer_is_scanned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    guardrails = Guardrails(OUTPUT_DEFAULTS)
    seen = counting(monkeypatch)
    first = guardrails.stream("choices[0].message.content")
    assert first.feed_whole(GREETING) == GREETING
    scans = len(seen)
    assert scans > 0
    for _ in range(3):
        scanner = guardrails.stream("choices[0].message.content")
        assert scanner.feed_whole(GREETING) == GREETING
        assert scanner.findings == ()
        assert not scanner.blocked
        with pytest.raises(RuntimeError):
            scanner.flush()  # flushed, as feed_whole always leaves it
    assert len(seen) == scans


def test_answers_with_findings_are_screened_every_time() -> None:
    guardrails = Guardrails(OUTPUT_DEFAULTS)
    uncached = Guardrails(OUTPUT_DEFAULTS).stream("x")
    uncached._clean = None
    expected = uncached.feed_whole(LEAKY)
    assert expected != LEAKY
    for _ in range(3):
        scanner = guardrails.stream("choices[0].message.content")
        assert scanner.feed_whole(LEAKY) == expected
        assert {f.type for f in scanner.findings} == {f.type for f in uncached.findings}
        assert scanner.findings


def test_streamed_chunks_and_long_answers_are_always_scanned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    guardrails = Guardrails(OUTPUT_DEFAULTS)
    guardrails.stream("a").feed_whole(GREETING)  # now known clean
    seen = counting(monkeypatch)
    streamed = guardrails.stream("b")
    out = streamed.feed("Hello! How can I ") + streamed.feed_whole("help you today?")
    assert out == GREETING
    assert seen  # a scanner that was fed before never takes the shortcut
    long_text = "plain words " * (CLEAN_TEXT_MAX_CHARS // 10)
    for _ in range(2):
        seen.clear()
        assert guardrails.stream("c").feed_whole(long_text) == long_text
        assert seen


def test_the_remembered_answers_are_bounded() -> None:
    guardrails = Guardrails(OUTPUT_DEFAULTS)
    for n in range(CLEAN_TEXTS_KEPT + 10):
        guardrails.stream("x").feed_whole(f"answer number {n}")
    assert len(guardrails._clean[False]) == CLEAN_TEXTS_KEPT
