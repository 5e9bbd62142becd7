"""The device a DRA selector looks at: :class:`DeviceView`, from a Node ``spec.devices[]`` entry.

Where this sits: the claim scheduler hands ``corral.devices.cel`` one device at a time; the
selector sees ``device.driver``, ``device.attributes["<domain>"].<name>``,
``device.capacity["<domain>"].<name>`` and ``device.allowMultipleAllocations``, as in
Kubernetes ``resource.k8s.io/v1``. An attribute or capacity name without a domain ("model")
belongs to the device's driver domain, so ``model`` on a ``gpu.nvidia.com`` device is
``device.attributes["gpu.nvidia.com"].model``.

Two devices with the same driver, attributes, capacity and sharing flag answer every selector
the same way (the name, taints and counters are not visible to CEL), so :attr:`signature` is
the key selector answers are cached under.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from corral.api.quantity import QuantityError, parse_quantity
from corral.devices.cel_values import Semver, SemverError, quantity_value, semver_value

AttributeValue = bool | int | str | Semver
_ATTRIBUTE_KINDS = ("bool", "int", "string", "version")


class DeviceViewError(ValueError):
    """A Node device entry the selector view cannot be built from (names the field)."""


def _split(qualified: str, driver: str) -> tuple[str, str]:
    domain, slash, name = qualified.rpartition("/")
    return (domain, name) if slash else (driver, qualified)


def _attribute(where: str, raw: Any) -> AttributeValue:
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in _ATTRIBUTE_KINDS:
        raise DeviceViewError(f"{where}: must have exactly one of {', '.join(_ATTRIBUTE_KINDS)}")
    kind, value = next(iter(raw.items()))
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "version" and isinstance(value, str):
        try:
            return Semver.parse(value)
        except SemverError as exc:
            raise DeviceViewError(f"{where}.version: {exc}") from None
    raise DeviceViewError(f"{where}.{kind}: must be a {kind}, got {value!r}")


def _capacity(where: str, raw: Any) -> Fraction:
    if not isinstance(raw, Mapping) or "value" not in raw:
        raise DeviceViewError(f"{where}: must be {{value: QUANTITY}}")
    try:
        amount: Fraction = parse_quantity(raw["value"])
    except QuantityError as exc:
        raise DeviceViewError(f"{where}.value: {exc}") from None
    return amount


def _kind_and_value(value: AttributeValue) -> tuple[str, Any]:
    if isinstance(value, Semver):  # build metadata is invisible to CEL (see cel_values)
        return ("version", str(Semver(value.major, value.minor, value.patch, value.prerelease)))
    kind = "bool" if isinstance(value, bool) else "int" if isinstance(value, int) else "string"
    return (kind, value)


@dataclass(frozen=True)
class DeviceView:
    """What CEL sees of one device; ``name`` is for error messages only (not in the signature)."""

    driver: str
    attributes: Mapping[str, Mapping[str, AttributeValue]] = field(default_factory=dict)
    capacity: Mapping[str, Mapping[str, Fraction]] = field(default_factory=dict)
    allow_multiple_allocations: bool = False
    name: str = field(default="", compare=False)
    signature: tuple[Any, ...] = field(init=False, repr=False, compare=False)
    # (section, domain, name) -> (type, value): what a selector's cache key is built from.
    fields: dict[tuple[str, str, str], tuple[str, Any]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        attributes = {d: dict(names) for d, names in self.attributes.items()}
        capacity = {d: dict(names) for d, names in self.capacity.items()}
        object.__setattr__(self, "attributes", attributes)
        object.__setattr__(self, "capacity", capacity)
        # Plain values keyed with their kind (True and 1 are equal in Python, not in CEL), so
        # hashing a key never runs Python code (Fraction and Semver hash in Python).
        flat: dict[tuple[str, str, str], tuple[str, Any]] = {}
        for d, amounts in capacity.items():
            for n, amount in amounts.items():
                flat["capacity", d, n] = ("quantity", f"{amount.numerator}/{amount.denominator}")
        for d, values in attributes.items():
            for n, value in values.items():
                flat["attributes", d, n] = _kind_and_value(value)
        signature = (self.driver, self.allow_multiple_allocations, tuple(sorted(flat.items())))
        object.__setattr__(self, "signature", signature)
        object.__setattr__(self, "fields", flat)

    @classmethod
    def from_node_device(cls, entry: Mapping[str, Any], *, where: str = "device") -> DeviceView:
        """The view of a Node ``spec.devices[]`` entry; DeviceViewError names the bad field."""
        driver = entry.get("driver")
        if not isinstance(driver, str) or not driver:
            raise DeviceViewError(f"{where}.driver: must be a non-empty string")
        attributes: dict[str, dict[str, AttributeValue]] = {}
        for qualified, raw in (entry.get("attributes") or {}).items():
            domain, name = _split(qualified, driver)
            attributes.setdefault(domain, {})[name] = _attribute(
                f"{where}.attributes.{qualified}", raw
            )
        capacity: dict[str, dict[str, Fraction]] = {}
        for qualified, raw in (entry.get("capacity") or {}).items():
            domain, name = _split(qualified, driver)
            capacity.setdefault(domain, {})[name] = _capacity(f"{where}.capacity.{qualified}", raw)
        shared = entry.get("allowMultipleAllocations", False)
        if not isinstance(shared, bool):
            raise DeviceViewError(f"{where}.allowMultipleAllocations: must be true or false")
        return cls(driver, attributes, capacity, shared, name=str(entry.get("name", "")))

    def cel_value(self) -> dict[str, Any]:
        """The ``device`` variable as the CEL engine takes it (see ``cel_values`` encodings)."""
        return {
            "driver": self.driver,
            "attributes": {
                domain: {
                    n: semver_value(v) if isinstance(v, Semver) else v for n, v in names.items()
                }
                for domain, names in self.attributes.items()
            },
            "capacity": {
                domain: {n: quantity_value(v) for n, v in names.items()}
                for domain, names in self.capacity.items()
            },
            "allowMultipleAllocations": self.allow_multiple_allocations,
        }
