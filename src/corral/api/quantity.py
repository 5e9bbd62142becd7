"""Kubernetes resource quantities ("40Gi", "500m", "1.5", "2e3"), parsed exactly.

Where this sits: every amount in the device kinds (Node capacities and counters, ResourceClaim
capacity requests, DeviceQuota nominal amounts) is a quantity in text. The kinds validate the
text at apply time with :func:`parse_quantity`; ``corral.devices`` (CEL values, allocation,
quotas) does its arithmetic on the :class:`fractions.Fraction` it returns, so sums and
comparisons never round. :func:`format_quantity` writes a value back in the canonical short form
(``1Gi`` rather than ``1073741824``) used in status fields.

Grammar (as Kubernetes' ``resource.Quantity``)::

    quantity ::= [+-] number [suffix]
    number   ::= digits | digits "." [digits] | "." digits
    suffix   ::= n | u | m | "" | k | M | G | T | P | E      (powers of 1000)
               | Ki | Mi | Gi | Ti | Pi | Ei                  (powers of 1024)
               | (e | E) [+-] digits                          (power of ten)
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Annotated

from pydantic import PlainValidator, WithJsonSchema

__all__ = ["Quantity", "QuantityError", "format_quantity", "parse_quantity"]

_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_BINARY = {
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
}
_QUANTITY = re.compile(
    r"^(?P<sign>[+-]?)(?P<number>\d+(?:\.\d*)?|\.\d+)"
    r"(?:(?P<exp>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$"
)
# A decimal exponent bigger than this is not a resource amount but a way to make the
# process allocate a huge integer; Kubernetes caps quantities far below it too.
_MAX_EXPONENT = 100


class QuantityError(ValueError):
    """Text that is not a Kubernetes quantity; the message quotes the text."""


def parse_quantity(value: str | int | float) -> Fraction:
    """The exact value of a quantity: ``parse_quantity("1.5Gi") == Fraction(1610612736)``.

    Integers are taken as they are; floats by their shortest decimal text (``0.1`` is one tenth,
    not the binary float nearest it). Raises :class:`QuantityError` naming the bad text.
    """
    if isinstance(value, bool):  # bool is an int subclass; True is not an amount.
        raise QuantityError(f"{value!r} is not a quantity (a number or text like '40Gi')")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QuantityError(f"{value!r} is not a quantity (not a finite number)")
        return Fraction(repr(value))
    if not isinstance(value, str):
        raise QuantityError(f"{value!r} is not a quantity (a number or text like '40Gi')")
    match = _QUANTITY.match(value)
    if match is None:
        raise QuantityError(
            f"{value!r} is not a quantity: expected a number with an optional suffix "
            "(n u m k M G T P E, Ki Mi Gi Ti Pi Ei, or e<exponent>), e.g. '40Gi', '500m', '2'"
        )
    number = match["number"]
    whole, _, frac = number.partition(".")
    amount = Fraction(int(whole or "0") * 10 ** len(frac) + int(frac or "0"), 10 ** len(frac))
    if match["exp"] is not None:
        exponent = int(match["exp"][1:])
        if abs(exponent) > _MAX_EXPONENT:
            raise QuantityError(
                f"{value!r} is not a quantity: exponent {exponent} is out of range "
                f"(at most {_MAX_EXPONENT} either way)"
            )
        amount *= Fraction(10) ** exponent
    else:
        suffix = match["suffix"] or ""
        amount *= _BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix]
    return -amount if match["sign"] == "-" else amount


def format_quantity(value: Fraction | int) -> str:
    """The canonical text of a value: the largest suffix that keeps the number whole.

    Whole multiples of 1024 take a binary suffix (``1Gi``, ``1536Mi``); otherwise the largest
    decimal suffix with a whole mantissa (``2k``, ``1500``, ``500m``). A value finer than a
    nano-unit is rounded up to the next nano-unit (as Kubernetes does), so a request written
    this way never asks for less than it meant. ``parse_quantity(format_quantity(q)) == q`` for
    every value that is a whole number of nano-units.
    """
    amount = Fraction(value)
    if amount < 0:
        return "-" + format_quantity(-amount)
    if amount == 0:
        return "0"
    if amount.denominator == 1:
        whole = amount.numerator
        for suffix, factor in reversed(_BINARY.items()):
            if whole % factor == 0:
                return f"{whole // factor}{suffix}"
        for suffix in ("E", "P", "T", "G", "M", "k"):
            factor = _DECIMAL[suffix].numerator
            if whole % factor == 0:
                return f"{whole // factor}{suffix}"
        return str(whole)
    for suffix in ("m", "u", "n"):
        scaled = amount / _DECIMAL[suffix]
        if scaled.denominator == 1:
            return f"{scaled.numerator}{suffix}"
    return f"{math.ceil(amount * 10**9)}n"


def _checked_quantity(value: object) -> str | int:
    # Text and integers are kept as written (a manifest reads back the way it was applied);
    # a float (YAML ``0.5``) becomes its canonical text so stored specs never carry floats.
    if isinstance(value, float) or not isinstance(value, str | int) or isinstance(value, bool):
        amount = parse_quantity(value)  # type: ignore[arg-type]  # raises for non-numbers
        text: str | int = format_quantity(amount)
    else:
        text = value
        amount = parse_quantity(value)
    if amount < 0:
        raise QuantityError(f"{value!r} is negative; an amount must be 0 or more")
    return text


Quantity = Annotated[
    str | int,
    PlainValidator(_checked_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}],
            "description": "a Kubernetes quantity, e.g. 40Gi, 500m, 8",
        }
    ),
]
"""A non-negative quantity field of a kind's schema: validated at apply time, kept as written."""
