"""PII detector: emails, phone numbers, payment cards, IBANs, national ids, IP addresses.

One combined regex does the scanning; checksums (Luhn, mod-97, SSN ranges, DNI letter, codice
fiscale check character) run only on its candidates. Every alternative starts with a lookbehind
that refuses to begin inside a longer token, which keeps the engine from trying each alternative
at every character of a word or digit run.
"""

from __future__ import annotations

from corral.guardrails._detector import Detector, Rule
from corral.guardrails._validators import (
    card_number_valid,
    iban_valid,
    italian_fiscal_code_valid,
    spanish_dni_valid,
    us_ssn_valid,
)

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_H16 = r"[0-9A-Fa-f]{1,4}"


def _e164_length_ok(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    return 8 <= digits <= 15


PII_RULES: dict[str, tuple[str, Rule]] = {
    "email": (
        r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,30}\.){1,3}[A-Za-z]{2,24}(?![\w-])",
        Rule("email", "medium"),
    ),
    "iban": (
        r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])",
        Rule("iban", "high", iban_valid),
    ),
    "it_fiscal_code": (
        r"(?<![A-Za-z0-9])[A-Z]{6}\d{2}[ABCDEHLMPRST]\d{2}[A-Z]\d{3}[A-Z](?![A-Za-z0-9])",
        Rule("national_id", "high", italian_fiscal_code_valid),
    ),
    "es_dni": (
        r"(?<![A-Za-z0-9-])[XYZ]?\d{7,8}-?[A-Z](?![A-Za-z0-9])",
        Rule("national_id", "high", spanish_dni_valid),
    ),
    "us_ssn": (
        r"(?<![\d-])\d{3}(?P<ssn_sep>[- ])\d{2}(?P=ssn_sep)\d{4}(?![\d-])",
        Rule("us_ssn", "high", us_ssn_valid),
    ),
    "card": (
        r"(?<![\d-])\d{4}(?:[ -]?\d{2,4}){2,4}(?:[ -]?\d{1,3})?(?![\d-])",
        Rule("credit_card", "critical", card_number_valid),
    ),
    "phone_intl": (
        r"(?<![\w+])\+[1-9]\d{0,2}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,4}){2,5}(?![\d-])",
        Rule("phone", "medium", _e164_length_ok),
    ),
    "phone_nanp": (
        r"(?<![\w+(-])(?:\(\d{3}\) ?|\d{3}[-.])\d{3}[-.]\d{4}(?![\d-])",
        Rule("phone", "medium"),
    ),
    "ipv4": (
        rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)",
        Rule("ip_address", "low"),
    ),
    "ipv6": (
        rf"(?<![\w:.])(?:(?:{_H16}:){{7}}{_H16}|(?:{_H16}:){{1,6}}(?::{_H16}){{1,6}}"
        rf"|(?:{_H16}:){{1,7}}:|::(?:{_H16}:){{0,5}}{_H16})(?![\w]|\.\d)",
        Rule("ip_address", "low", lambda s: s.count(":") >= 2 and any(c.isdigit() for c in s)),
    ),
}


def pii_detector() -> Detector:
    # An email (≤ 64 + 1 + 3 × 31 + 24) bounds the span; everything else is shorter.
    return Detector("pii", PII_RULES, max_span=185, lookahead=2)
