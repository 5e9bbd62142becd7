"""Quantities: Kubernetes text parses to exact values, formats canonically and round-trips."""

from __future__ import annotations

from fractions import Fraction

import pytest

from corral.api.quantity import QuantityError, format_quantity, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", Fraction(0)),
        ("2", Fraction(2)),
        ("1.5", Fraction(3, 2)),
        (".5", Fraction(1, 2)),
        ("1.", Fraction(1)),
        ("+3", Fraction(3)),
        ("-3k", Fraction(-3000)),
        ("500m", Fraction(1, 2)),
        ("250u", Fraction(1, 4000)),
        ("7n", Fraction(7, 10**9)),
        ("1k", Fraction(1000)),
        ("2M", Fraction(2 * 10**6)),
        ("3G", Fraction(3 * 10**9)),
        ("1T", Fraction(10**12)),
        ("1P", Fraction(10**15)),
        ("1E", Fraction(10**18)),
        ("1Ki", Fraction(1024)),
        ("40Gi", Fraction(40 * 1024**3)),
        ("1.5Gi", Fraction(1610612736)),
        ("1Ti", Fraction(1024**4)),
        ("1Pi", Fraction(1024**5)),
        ("1Ei", Fraction(1024**6)),
        ("2e3", Fraction(2000)),
        ("2E3", Fraction(2000)),
        ("12e-3", Fraction(12, 1000)),
        ("1.25e+2", Fraction(125)),
    ],
)
def test_text_parses_to_its_exact_value(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


def test_numbers_are_taken_as_written() -> None:
    assert parse_quantity(8) == 8
    assert parse_quantity(0.1) == Fraction(1, 10)
    assert parse_quantity(81920.0) == 81920


def test_equal_amounts_in_different_units_are_equal() -> None:
    assert parse_quantity("1Gi") == parse_quantity("1024Mi")
    assert parse_quantity("1") == parse_quantity("1000m") == parse_quantity("1e0")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Fraction(0), "0"),
        (Fraction(4), "4"),
        (Fraction(1500), "1500"),
        (Fraction(2000), "2k"),
        (Fraction(1024), "1Ki"),
        (Fraction(40 * 1024**3), "40Gi"),
        (Fraction(1610612736), "1536Mi"),
        (Fraction(3, 2), "1500m"),
        (Fraction(1, 4000), "250u"),
        (Fraction(-5, 1000), "-5m"),
        (Fraction(7, 10**9), "7n"),
    ],
)
def test_values_format_to_the_shortest_whole_form(value: Fraction, text: str) -> None:
    assert format_quantity(value) == text


@pytest.mark.parametrize(
    "text", ["40Gi", "1536Mi", "500m", "0.001", "12e-3", "-2k", "1.5", "3E", "123456789n", "7"]
)
def test_formatted_text_parses_back_to_the_same_value(text: str) -> None:
    value = parse_quantity(text)
    assert parse_quantity(format_quantity(value)) == value


def test_values_finer_than_a_nano_unit_round_up() -> None:
    assert format_quantity(Fraction(1, 3)) == "333333334n"
    assert parse_quantity(format_quantity(Fraction(1, 3))) >= Fraction(1, 3)


@pytest.mark.parametrize(
    "bad", ["", "Gi", "40 Gi", "40GB", "40gi", "1.2.3", "--1", "1e", "1Kii", "0x10", "1e999", " 1"]
)
def test_bad_text_is_refused_and_named(bad: str) -> None:
    with pytest.raises(QuantityError) as caught:
        parse_quantity(bad)
    assert repr(bad) in str(caught.value)


@pytest.mark.parametrize("bad", [True, float("nan"), float("inf"), None, [1]])
def test_values_that_are_not_amounts_are_refused(bad: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(bad)  # type: ignore[arg-type]
