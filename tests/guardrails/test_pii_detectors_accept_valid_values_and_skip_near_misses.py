"""Each PII detector finds its true positives and leaves the look-alikes alone."""

from __future__ import annotations

import guardrail_samples as samples
import pytest

from corral.guardrails import Guardrails

GUARD = Guardrails()


def found_types(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.span[0] : f.span[1]]) for f in GUARD.scan_text(text).findings]


@pytest.mark.parametrize(
    ("value", "finding_type"),
    [
        ("alice.smith+news@mail.example.co.uk", "email"),
        ("+1 415 555 0134", "phone"),
        ("+44 20 7946 0958", "phone"),
        ("+81 3-1234-5678", "phone"),
        ("(415) 555-0199", "phone"),
        (samples.VISA, "credit_card"),
        (samples.AMEX, "credit_card"),
        (samples.MASTERCARD, "credit_card"),
        ("4012888888881881", "credit_card"),
        (samples.IBAN_GB, "iban"),
        (samples.IBAN_DE, "iban"),
        (samples.SSN, "us_ssn"),
        (samples.DNI, "national_id"),
        (samples.NIE, "national_id"),
        (samples.FISCAL_CODE, "national_id"),
        ("192.168.10.254", "ip_address"),
        ("2001:db8::8a2e:370:7334", "ip_address"),
        ("fe80:0:0:0:202:b3ff:fe1e:8329", "ip_address"),
    ],
)
def test_true_positive_is_found_with_its_exact_span(value: str, finding_type: str) -> None:
    text = f"Please note {value}. Thanks"
    assert found_types(text) == [(finding_type, value)]


@pytest.mark.parametrize(
    "near_miss",
    [
        samples.VISA_BAD_LUHN,
        "1234 5678 9012 3456",  # Luhn-valid shape but no card network starts with 1
        samples.IBAN_DE_BAD_CHECK,
        "GB82 WEST 1234 5698 7654",  # right checksum digits, wrong length for GB
        "000-12-3456",
        "666-12-3456",
        "912-34-5678",
        "123-00-4567",
        "123-45-0000",
        "123-45 6789",  # mixed separators are not how SSNs are written
        samples.DNI_BAD_LETTER,
        samples.FISCAL_CODE_BAD,
        "256.1.1.1",
        "version 1.2.3",
        "user at example dot com",
        "+12",
        "order 1700000000123",
        "ratio 3:4",
    ],
)
def test_near_miss_is_not_flagged(near_miss: str) -> None:
    assert found_types(f"Please note {near_miss}. Thanks") == []


def test_digits_inside_a_longer_number_do_not_start_a_card() -> None:
    # A valid card number embedded in a longer digit run is some other identifier.
    assert found_types("ref 99" + samples.VISA.replace(" ", "") + "99") == []
