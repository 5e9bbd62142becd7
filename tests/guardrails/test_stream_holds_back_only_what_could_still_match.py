"""Streamed output is held back only as far as a match could still reach: the current word for
emails and IPv6 addresses, not the 64 characters an email's local part may span."""

import pytest

from corral.guardrails import Guardrails

PROSE = (
    "The quick brown fox jumps over the lazy dog and writes to Anna about the weather in "
    "Paris, which is lovely this time of year. I think so too, said the dog. "
) * 4

# Matches (True) and near-misses (False) decided by the characters right after them, which a
# stream receives later.
EDGES = [
    ("mail bob.smith@example.com now", True),
    ("mail bob.smith@example.comé then", False),
    ("mail bob.smith@example.com-x no", False),
    ("addr fe80::1ff:fe23:4567:890a here", True),
    ("addr fe80::1ff:fe23:4567:890a.5 dotted", False),
    ("addr fe80::1ff:fe23:4567:890a:: odd", False),
    ("a.b@c.io,x@y.org;z@w.net end", True),
]


def streamed(text: str, step: int) -> tuple[str, int]:
    scanner = Guardrails().stream()
    released, most_held = [], 0
    for start in range(0, len(text), step):
        released.append(scanner.feed(text[start : start + step]))
        most_held = max(most_held, scanner.held_back)
    released.append(scanner.flush())
    return "".join(released), most_held


@pytest.mark.parametrize(("text", "redacted"), EDGES)
@pytest.mark.parametrize("step", [1, 2, 3, 7])
def test_a_stream_redacts_exactly_what_a_whole_scan_does(text, redacted, step):
    whole = Guardrails().scan_text(text).redacted_text
    assert ("[REDACTED" in whole) is redacted
    assert streamed(text, step)[0] == whole


def test_plain_prose_is_held_back_by_a_few_characters_only():
    out, most_held = streamed(PROSE, 1)
    assert out == PROSE
    # At most one look-again step (16 characters) plus the longest secret prefix still arriving.
    assert most_held <= 28
