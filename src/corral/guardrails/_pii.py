"""PII detector: emails, phone numbers, payment cards, IBANs, national ids, IP addresses.

One combined regex does the scanning; checksums (Luhn, mod-97, SSN ranges, DNI letter, codice
fiscale check character) run only on its candidates. Every alternative starts with a lookbehind
that refuses to begin inside a longer token, which keeps the engine from trying each alternative
at every character of a word or digit run.
"""

from __future__ import annotations

import string

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


# Each alternative opens with a consuming character class and checks the character before it with
# a two-character lookbehind afterwards (see _detector: that keeps the combined regex fast).
EMAIL_RULES: dict[str, tuple[str, Rule]] = {
    "email": (
        r"[A-Za-z0-9](?<![\w.%+-][A-Za-z0-9])[A-Za-z0-9._%+-]{0,63}@"
        r"(?:[A-Za-z0-9-]{1,30}\.){1,3}[A-Za-z]{2,24}(?![\w-])",
        Rule("email", "medium"),
    ),
}

PII_RULES: dict[str, tuple[str, Rule]] = {
    "iban": (
        r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?"
        r"(?![A-Za-z0-9])",
        Rule("iban", "high", iban_valid),
    ),
    "it_fiscal_code": (
        r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]{5}\d{2}[ABCDEHLMPRST]\d{2}[A-Z]\d{3}[A-Z](?![A-Za-z0-9])",
        Rule("national_id", "high", italian_fiscal_code_valid),
    ),
    "es_nie": (
        r"[XYZ](?<![A-Za-z0-9-][XYZ])\d{7}-?[A-Z](?![A-Za-z0-9])",
        Rule("national_id", "high", spanish_dni_valid),
    ),
    "us_ssn": (
        r"\d(?<![\d-]\d)\d{2}(?P<ssn_sep>[- ])\d{2}(?P=ssn_sep)\d{4}(?![\d-])",
        Rule("us_ssn", "high", us_ssn_valid),
    ),
    "es_dni": (
        r"\d(?<![A-Za-z0-9-]\d)\d{6,7}-?[A-Z](?![A-Za-z0-9])",
        Rule("national_id", "high", spanish_dni_valid),
    ),
    "card": (
        r"\d(?<![\d-]\d)\d{3}(?:[ -]?\d{2,4}){2,4}(?:[ -]?\d{1,3})?(?![\d-])",
        Rule("credit_card", "critical", card_number_valid),
    ),
    "phone_intl": (
        r"\+(?<![\w+]\+)[1-9]\d{0,2}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,4}){2,5}(?![\d-])",
        Rule("phone", "medium", _e164_length_ok),
    ),
    "phone_nanp_paren": (
        r"\((?<![\w+(-]\()\d{3}\) ?\d{3}[-.]\d{4}(?![\d-])",
        Rule("phone", "medium"),
    ),
    "phone_nanp": (
        r"\d(?<![\w+(-]\d)\d{2}[-.]\d{3}[-.]\d{4}(?![\d-])",
        Rule("phone", "medium"),
    ),
    "ipv4": (
        # The first octet is spelled out after its first digit so the alternative opens with \d.
        r"\d(?<![\w.]\d)(?:(?<=2)5[0-5]|(?<=2)[0-4]\d|(?<=1)\d\d|(?<=[1-9])\d|)"
        rf"(?:\.{_OCTET}){{3}}(?![\w]|\.\d)",
        Rule("ip_address", "low"),
    ),
}

IPV6_RULES: dict[str, tuple[str, Rule]] = {
    "ipv6": (
        rf"(?<![\w:.])(?:(?:{_H16}:){{7}}{_H16}|(?:{_H16}:){{1,6}}(?::{_H16}){{1,6}}"
        rf"|(?:{_H16}:){{1,7}}:|::(?:{_H16}:){{0,5}}{_H16})(?![\w:]|\.\d)",
        Rule("ip_address", "low", lambda s: s.count(":") >= 2 and any(c.isdigit() for c in s)),
    ),
}


EMAIL_CHARACTERS = string.ascii_letters + string.digits + "._%+-@"
"""Every character an email match holds (a non-ASCII letter after one only ends it)."""


def email_detector() -> Detector:
    # Emails are found from their "@": the local part is at most 64 characters before it.
    return Detector(
        "pii",
        EMAIL_RULES,
        max_span=185,
        lookahead=1,
        key="@",
        key_back=64,
        inside=EMAIL_CHARACTERS,
    )


def pii_detector() -> Detector:
    # Every match opens with a digit, a capital, "+" or "(" followed by a digit, capital or dot,
    # and never right after an ASCII digit (each alternative's lookbehind refuses one): so a
    # run of digits (a timestamp, an order number, hex) is a candidate once, at its start,
    # instead of once per digit.
    return Detector(
        "pii",
        PII_RULES,
        max_span=64,
        lookahead=2,
        key="(?<![0-9])[0-9A-Z+(][0-9A-Z.]",
        key_back=0,
        key_width=2,
    )


def ipv6_detector() -> Detector:
    # Only looked at around "x:y" pairs of hex digits or colons, which prose rarely has.
    return Detector(
        "pii",
        IPV6_RULES,
        max_span=48,
        lookahead=2,
        key="[0-9A-Fa-f:]:[0-9A-Fa-f:]",
        key_back=40,
        key_width=3,
        inside=string.hexdigits + ":",
    )


def all_pii_detectors() -> tuple[Detector, ...]:
    return (email_detector(), pii_detector(), ipv6_detector())
