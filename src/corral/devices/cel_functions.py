"""The Kubernetes CEL extension functions a DRA selector may call, as Python callables.

Where this sits: ``corral.devices.cel`` registers :data:`EXTENSIONS` (plus the engine's own
string/list/math/sets libraries) on the CEL context it evaluates selectors in. The engine turns
``x.f(a)`` into ``f(x, a)``, so one function serves both the method and the call spelling, and a
name shared by two types (``compareTo`` on quantities and semvers) dispatches here on the
decoded value (see ``cel_values`` for the encodings).

Semantics follow Kubernetes' ``k8s.io/apiserver/pkg/cel/library`` quantity and semver libraries:
``asInteger`` fails on a fractional value or one outside int64, ``compareTo`` returns -1/0/1,
``add``/``sub`` take a quantity or an int, ``semver(s, true)`` normalizes ``v1.2``.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

from corral.api.quantity import QuantityError, parse_quantity
from corral.devices.cel_values import (
    Semver,
    SemverError,
    as_quantity,
    as_semver,
    describe,
    quantity_value,
    semver_value,
)

_INT64 = (-(2**63), 2**63 - 1)


class ExtensionError(ValueError):
    """A Kubernetes extension function called on the wrong value (a CEL runtime error)."""


def _need_quantity(value: Any, function: str) -> Fraction:
    amount = as_quantity(value)
    if amount is None:
        raise ExtensionError(f"{function}: expected a quantity, got {describe(value)}")
    return amount


def _need_semver(value: Any, function: str) -> Semver:
    version = as_semver(value)
    if version is None:
        raise ExtensionError(f"{function}: expected a semver, got {describe(value)}")
    return version


def _text(value: Any, function: str) -> str:
    if not isinstance(value, str):
        raise ExtensionError(f"{function}: expected a string, got {describe(value)}")
    return value


def quantity(text: Any) -> dict[str, str]:
    try:
        return quantity_value(parse_quantity(_text(text, "quantity")))
    except QuantityError as exc:
        raise ExtensionError(f"quantity: {exc}") from None


def is_quantity(text: Any) -> bool:
    try:
        parse_quantity(_text(text, "isQuantity"))
    except QuantityError:
        return False
    return True


def semver(text: Any, normalize: bool = False) -> dict[str, str]:
    try:
        return semver_value(Semver.parse(_text(text, "semver"), normalize=normalize))
    except SemverError as exc:
        raise ExtensionError(f"semver: {exc}") from None


def is_semver(text: Any, normalize: bool = False) -> bool:
    try:
        Semver.parse(_text(text, "isSemver"), normalize=normalize)
    except SemverError:
        return False
    return True


def _ordered(left: Any, right: Any, function: str) -> tuple[Any, Any]:
    """Both sides decoded as the same comparable type (quantity or semver)."""
    if as_quantity(left) is not None:
        return _need_quantity(left, function), _need_quantity(right, function)
    if as_semver(left) is not None:
        return _need_semver(left, function), _need_semver(right, function)
    raise ExtensionError(f"{function}: expected a quantity or a semver, got {describe(left)}")


def compare_to(left: Any, right: Any) -> int:
    a, b = _ordered(left, right, "compareTo")
    return int(a > b) - int(a < b)


def is_greater_than(left: Any, right: Any) -> bool:
    a, b = _ordered(left, right, "isGreaterThan")
    return bool(a > b)


def is_less_than(left: Any, right: Any) -> bool:
    a, b = _ordered(left, right, "isLessThan")
    return bool(a < b)


def _integer(amount: Fraction) -> int | None:
    if amount.denominator != 1 or not _INT64[0] <= amount.numerator <= _INT64[1]:
        return None
    return amount.numerator


def as_integer(value: Any) -> int:
    amount = _need_quantity(value, "asInteger")
    result = _integer(amount)
    if result is None:
        raise ExtensionError(f"asInteger: {amount} is not an integer that fits in int64")
    return result


def is_integer(value: Any) -> bool:
    return _integer(_need_quantity(value, "isInteger")) is not None


def as_approximate_float(value: Any) -> float:
    return float(_need_quantity(value, "asApproximateFloat"))


def sign(value: Any) -> int:
    amount = _need_quantity(value, "sign")
    return (amount > 0) - (amount < 0)


def _operand(value: Any, function: str) -> Fraction:
    if isinstance(value, int) and not isinstance(value, bool):
        return Fraction(value)
    return _need_quantity(value, function)


def add(left: Any, right: Any) -> dict[str, str]:
    return quantity_value(_need_quantity(left, "add") + _operand(right, "add"))


def sub(left: Any, right: Any) -> dict[str, str]:
    return quantity_value(_need_quantity(left, "sub") - _operand(right, "sub"))


def major(value: Any) -> int:
    return _need_semver(value, "major").major


def minor(value: Any) -> int:
    return _need_semver(value, "minor").minor


def patch(value: Any) -> int:
    return _need_semver(value, "patch").patch


EXTENSIONS: dict[str, Callable[..., Any]] = {
    "quantity": quantity,
    "isQuantity": is_quantity,
    "semver": semver,
    "isSemver": is_semver,
    "compareTo": compare_to,
    "isGreaterThan": is_greater_than,
    "isLessThan": is_less_than,
    "asInteger": as_integer,
    "isInteger": is_integer,
    "asApproximateFloat": as_approximate_float,
    "sign": sign,
    "add": add,
    "sub": sub,
    "major": major,
    "minor": minor,
    "patch": patch,
}
