"""Checksums and plausibility checks that run only on regex candidates, never on whole texts.

A regex finds something shaped like a card number or an IBAN; these functions decide whether it
really is one, which is what keeps random digit runs (order numbers, timestamps) from being
redacted.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_NON_ALNUM = re.compile(r"[^0-9A-Za-z]")

# Issuer prefixes (IIN ranges) and lengths of the networks worth protecting; Luhn alone passes
# one random digit string in ten.
_CARD_PREFIXES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("4", (13, 16, 19)),
    ("34", (15,)),
    ("37", (15,)),
    ("6011", (16, 19)),
    ("65", (16, 19)),
    ("35", (16, 19)),
    ("36", (14,)),
    ("30", (14,)),
    ("38", (14,)),
    ("62", (16, 17, 18, 19)),
)

# ISO 13616 lengths for the countries a European gateway sees most; other countries fall back to
# the generic 15..34 range.
IBAN_LENGTHS: dict[str, int] = {
    "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
    "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26,
    "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15,
    "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
}  # fmt: skip

_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def card_number_valid(candidate: str) -> bool:
    digits = _NON_ALNUM.sub("", candidate)
    if not digits.isdigit():
        return False
    if len(digits) not in range(13, 20):
        return False
    if 51 <= int(digits[:2]) <= 55 or 2221 <= int(digits[:4]) <= 2720:
        if len(digits) != 16:
            return False
    elif not any(digits.startswith(p) and len(digits) in n for p, n in _CARD_PREFIXES):
        return False
    return luhn_valid(digits)


def iban_valid(candidate: str) -> bool:
    iban = _NON_ALNUM.sub("", candidate).upper()
    country = iban[:2]
    expected = IBAN_LENGTHS.get(country)
    if expected is not None and len(iban) != expected:
        return False
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    # Letters count as two digits (A=10 .. Z=35); the mod-97 remainder of the number must be 1.
    remainder = 0
    for char in rearranged:
        value = int(char, 36)
        remainder = (remainder * (100 if value > 9 else 10) + value) % 97
    return remainder == 1


def us_ssn_valid(candidate: str) -> bool:
    digits = _NON_ALNUM.sub("", candidate)
    if len(digits) != 9 or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    # The SSA never issues area 000, 666 or 900-999, group 00 or serial 0000; the two famous
    # advertising numbers are void too.
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return digits not in ("078051120", "219099999")


def spanish_dni_valid(candidate: str) -> bool:
    text = candidate.upper().replace("-", "").replace(" ", "")
    body, letter = text[:-1], text[-1]
    # An NIE's leading X/Y/Z stands for 0/1/2 in the checksum.
    if body[:1] in ("X", "Y", "Z"):
        body = str("XYZ".index(body[0])) + body[1:]
    if not body.isdigit():
        return False
    return _DNI_LETTERS[int(body) % 23] == letter


# Codice fiscale: what a character in an odd (1st, 3rd, ...) position is worth, by its value.
_CF_ODD = [
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
]  # fmt: skip


def italian_fiscal_code_valid(candidate: str) -> bool:
    code = candidate.upper()
    if len(code) != 16:
        return False
    total = 0
    for index, char in enumerate(code[:15]):
        value = int(char) if char.isdigit() else ord(char) - 65
        total += _CF_ODD[value] if index % 2 == 0 else value
    return chr(65 + total % 26) == code[15]


def shannon_entropy(text: str) -> float:
    counts = Counter(text)
    length = len(text)
    return -sum(n / length * math.log2(n / length) for n in counts.values())


def looks_random(text: str, min_entropy: float) -> bool:
    """A secret value mixes letters and digits and is not a word or a repeated pattern."""
    has_digit = any(c.isdigit() for c in text)
    has_alpha = any(c.isalpha() for c in text)
    return has_digit and has_alpha and shannon_entropy(text) >= min_entropy
