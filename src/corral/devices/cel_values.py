"""The two Kubernetes CEL value types a device selector sees: quantities and semantic versions.

Where this sits: ``corral.devices.cel`` compiles a DRA selector; the device it is evaluated on
carries capacities (quantities) and version attributes (semvers). The CEL engine
(common-expression-language, Rust bindings) only carries plain CEL values across its Python
boundary, so each of these types travels as a one-key map whose value is a canonical string:
``{"__quantity__": "<numerator>/<denominator>"}`` and ``{"__semver__": "1.2.3-rc.1"}``.
Canonical means equal values have equal maps, so CEL's own ``==`` is the semantic equality
Kubernetes defines (``quantity("1Gi") == quantity("1024Mi")``; semver build metadata ignored).
The extension functions in ``cel_functions`` decode these maps, do exact arithmetic on
:class:`fractions.Fraction` and compare semvers by the semver.org 2.0.0 precedence rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from functools import total_ordering
from typing import Any

QUANTITY_TAG = "__quantity__"
SEMVER_TAG = "__semver__"

# semver.org 2.0.0, the official regular expression (no leading zeros, dot-separated
# pre-release and build identifiers).
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
# What Kubernetes' semver(s, true) normalizes: a leading "v", a missing minor/patch, leading
# zeros in the numeric parts ("v1.02" -> "1.2.0").
_LOOSE = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(.*)$")


class SemverError(ValueError):
    """Text that is not a semantic version."""


@total_ordering
@dataclass(frozen=True)
class Semver:
    """A semantic version; ordering and equality follow semver.org precedence (build ignored)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: str, *, normalize: bool = False) -> Semver:
        if normalize:
            loose = _LOOSE.match(text)
            if loose:
                major, minor, patch, rest = loose.groups()
                text = f"{int(major)}.{int(minor or 0)}.{int(patch or 0)}{rest}"
        match = _SEMVER.match(text)
        if match is None:
            raise SemverError(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH)")
        major, minor, patch, pre, build = match.groups()
        return cls(
            int(major), int(minor), int(patch), tuple(pre.split(".")) if pre else (), build or ""
        )

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        return text + (f"+{self.build}" if self.build else "")

    def _key(self) -> tuple[Any, ...]:
        # A release sorts after every pre-release of it; numeric identifiers sort before
        # alphanumeric ones and numerically among themselves (semver.org §11).
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, not self.prerelease, pre)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Semver) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: Semver) -> bool:
        return self._key() < other._key()


def quantity_value(amount: Fraction) -> dict[str, str]:
    """The CEL value of a quantity."""
    return {QUANTITY_TAG: f"{amount.numerator}/{amount.denominator}"}


def semver_value(version: Semver) -> dict[str, str]:
    """The CEL value of a semver: build metadata dropped so ``==`` ignores it, as Kubernetes."""
    canonical = Semver(version.major, version.minor, version.patch, version.prerelease)
    return {SEMVER_TAG: str(canonical)}


def as_quantity(value: Any) -> Fraction | None:
    """The quantity a CEL value carries, or None when it is not one."""
    if isinstance(value, dict) and len(value) == 1 and QUANTITY_TAG in value:
        return Fraction(value[QUANTITY_TAG])
    return None


def as_semver(value: Any) -> Semver | None:
    """The semver a CEL value carries, or None when it is not one."""
    if isinstance(value, dict) and len(value) == 1 and SEMVER_TAG in value:
        return Semver.parse(value[SEMVER_TAG])
    return None


def describe(value: Any) -> str:
    """A CEL-ish type name for error messages."""
    if as_quantity(value) is not None:
        return "quantity"
    if as_semver(value) is not None:
        return "semver"
    if isinstance(value, bool):
        return "bool"
    names = {int: "int", float: "double", str: "string", dict: "map", list: "list"}
    return names.get(type(value), type(value).__name__)
