"""``DeviceClass``: a named kind of device ("gpu", "h100", "cpu") that claims ask for.

Where this sits: a ResourceClaim request names a class; the allocator (``corral.devices``)
offers it only devices every selector of the class accepts, and then the request's own
selectors. Selectors are CEL expressions over one device (``device.driver``,
``device.attributes["gpu.nvidia.com"].model``, ``device.capacity[...]``), as in Kubernetes
``resource.k8s.io/v1`` DeviceClass; ``config`` carries opaque driver parameters the same way.

CEL is compiled at apply time so a selector that cannot compile is refused with its position.
This layer cannot import the CEL engine (``corral.devices.cel``), so both DeviceClass and
ResourceClaim run the check installed with :func:`use_selector_check` (the composition root
installs ``corral.devices.cel_checks.selector_problems``); until then only the schema is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from corral.api.kinds.node import domain_name_problem
from corral.api.registry import KindInfo, register_kind

MAX_SELECTORS = 32
MAX_CONFIGS = 32
MAX_EXPRESSION_LENGTH = 10 * 1024  # Kubernetes' CELSelectorExpressionMaxLength

SelectorCheck = Callable[[Any], list[tuple[str, str]]]
"""Typed spec -> ``(field path from the object root, message)`` per selector that fails."""

_SELECTOR_CHECK: list[SelectorCheck] = []


def use_selector_check(check: SelectorCheck | None) -> None:
    """Install (or, with None, remove) the CEL check both device kinds run at the write gate."""
    _SELECTOR_CHECK.clear()
    if check is not None:
        _SELECTOR_CHECK.append(check)


def check_selectors(spec: Any) -> list[tuple[str, str]]:
    """The kinds' ``check_spec`` hook: the installed CEL check, or nothing when none is."""
    return _SELECTOR_CHECK[0](spec) if _SELECTOR_CHECK else []


class CELSelector(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expression: str = Field(
        min_length=1,
        max_length=MAX_EXPRESSION_LENGTH,
        description='CEL over one device, e.g. device.driver == "gpu.nvidia.com"',
    )

    @field_validator("expression")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a non-empty CEL expression")
        return value


class DeviceSelector(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cel: CELSelector


class OpaqueConfig(BaseModel):
    """Parameters for one driver, passed through to it unread (Kubernetes OpaqueDeviceConfig)."""

    model_config = ConfigDict(extra="forbid")

    driver: str = Field(min_length=1, max_length=63)
    parameters: dict[str, Any] = Field(default_factory=dict)

    @field_validator("driver")
    @classmethod
    def _driver(cls, value: str) -> str:
        if (problem := domain_name_problem(value, "driver name")) is not None:
            raise ValueError(problem)
        return value


class DeviceClassConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    opaque: OpaqueConfig


class DeviceClassSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    selectors: list[DeviceSelector] = Field(
        default_factory=list,
        max_length=MAX_SELECTORS,
        description="every selector must accept a device for it to be of this class",
    )
    config: list[DeviceClassConfig] = Field(default_factory=list, max_length=MAX_CONFIGS)


DEVICE_CLASS = register_kind(
    KindInfo(
        kind="DeviceClass",
        plural="deviceclasses",
        spec_model=DeviceClassSpec,
        namespaced=False,
        short_names=("dc",),
        description="A named kind of device (CEL selectors over driver, attributes, capacity).",
        check_spec=check_selectors,
    )
)
