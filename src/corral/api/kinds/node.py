"""``Node``: one machine and the devices it offers (CPUs, GPUs), as the allocator sees them.

Where this sits: a node registers itself at start (``corral.devices.inventory`` probes the
CPU, memory and ``nvidia-smi``) or an operator applies one per machine (``corral apply`` of a
fleet file). The claim scheduler (``corral.devices``) reads every Node into its fleet index and
allocates ResourceClaims against the devices here. The shape is Kubernetes
``resource.k8s.io/v1`` ResourceSlice (one pool per node, named after it), with the node's
taints and health carried on the same object:

- ``spec.devices[]``: ``name``, ``driver`` (``gpu.nvidia.com``, ``cpu.corral.dev``),
  ``attributes`` (typed: exactly one of ``string``/``int``/``bool``/``version``), ``capacity``
  (quantities), ``allowMultipleAllocations`` (shareable: claims consume capacity from it),
  ``consumesCounters`` (draws on a ``sharedCounters`` set, e.g. MIG slices of one GPU) and
  ``taints``.
- ``status``: ``conditions`` (``Ready``), per-device ``health`` and the last heartbeat.

Attribute and capacity names are C identifiers, optionally qualified by a domain
(``gpu.nvidia.com/model``); an unqualified name belongs to the device's driver domain.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from corral.api.objects import DNS1123_LABEL, DNS1123_SUBDOMAIN, ResourceStatus
from corral.api.quantity import Quantity
from corral.api.registry import KindInfo, register_kind

# Kubernetes' limits for a ResourceSlice device (resource.k8s.io/v1 validation).
MAX_DEVICES = 128
MAX_ATTRIBUTES_AND_CAPACITIES = 32
MAX_VALUE_LENGTH = 64
MAX_COUNTER_SETS = 8
MAX_TAINTS = 16

# semver.org 2.0.0 (no leading zeros; dot-separated pre-release and build identifiers).
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def qualified_name_problem(name: str, *, require_domain: bool = False) -> str | None:
    """Why ``name`` is not ``[domain/]identifier`` (Kubernetes' QualifiedName), or None."""
    domain, slash, identifier = name.rpartition("/")
    if require_domain and not slash:
        return f"{name!r} must be qualified as domain/name (e.g. gpu.nvidia.com/nvlinkDomain)"
    if slash and (not domain or len(domain) > 63 or not DNS1123_SUBDOMAIN.match(domain)):
        return f"{name!r}: the domain must be a DNS subdomain of at most 63 characters"
    if not identifier or len(identifier) > 32 or not _IDENTIFIER.match(identifier):
        return f"{name!r}: the name must be a C identifier of at most 32 characters"
    return None


def domain_name_problem(value: str, what: str) -> str | None:
    """Why ``value`` is not a driver or domain name (DNS subdomain, 63 chars), or None."""
    if len(value) > 63 or not DNS1123_SUBDOMAIN.match(value):
        return f"{value!r} is not a valid {what}: a lower-case DNS subdomain of at most 63 chars"
    return None


class DeviceAttribute(BaseModel):
    """One typed value; exactly one of the four fields is set."""

    string: StrictStr | None = Field(default=None, max_length=MAX_VALUE_LENGTH)
    int_: StrictInt | None = Field(default=None, alias="int")
    bool_: StrictBool | None = Field(default=None, alias="bool")
    version: StrictStr | None = Field(
        default=None, max_length=MAX_VALUE_LENGTH, description="a semantic version (semver 2.0.0)"
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str | None) -> str | None:
        if value is not None and not SEMVER.match(value):
            raise ValueError(f"{value!r} is not a semantic version (MAJOR.MINOR.PATCH, semver 2.0)")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> DeviceAttribute:
        given = [v for v in (self.string, self.int_, self.bool_, self.version) if v is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of string, int, bool, version")
        return self


class DeviceCapacity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Quantity


class Counter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Quantity


def _counter_names(counters: dict[str, Counter]) -> dict[str, Counter]:
    for name in counters:
        if not _IDENTIFIER.match(name) or len(name) > 32:
            raise ValueError(f"counter {name!r}: the name must be a C identifier of at most 32")
    return counters


class CounterSet(BaseModel):
    """Amounts several devices draw on together (e.g. the memory slices of one GPU)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=63)
    counters: dict[str, Counter] = Field(min_length=1, max_length=32)

    _names = field_validator("counters")(_counter_names)

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not DNS1123_LABEL.match(value):
            raise ValueError(f"{value!r} is not a valid counter set name (DNS-1123 label)")
        return value


class CounterConsumption(BaseModel):
    model_config = ConfigDict(extra="forbid")

    counterSet: str = Field(min_length=1, max_length=63, description="a spec.sharedCounters name")
    counters: dict[str, Counter] = Field(min_length=1, max_length=32)

    _names = field_validator("counters")(_counter_names)


class Taint(BaseModel):
    """Keeps claims off a node or device; ``NoExecute`` also evicts the claims already on it."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=316)
    value: str = Field(default="", max_length=63)
    effect: Literal["NoSchedule", "NoExecute"]

    @field_validator("key")
    @classmethod
    def _qualified(cls, value: str) -> str:
        domain, slash, name = value.rpartition("/")
        if slash and (not domain or not DNS1123_SUBDOMAIN.match(domain)):
            raise ValueError(f"{value!r}: the key's prefix must be a DNS subdomain")
        if not re.match(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$", name):
            raise ValueError(f"{value!r}: the key's name must be 1-63 alphanumerics, '-', '_', '.'")
        return value


class Device(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=63, description="unique on this node (DNS label)")
    driver: str = Field(min_length=1, max_length=63, description="e.g. gpu.nvidia.com")
    attributes: dict[str, DeviceAttribute] = Field(default_factory=dict)
    capacity: dict[str, DeviceCapacity] = Field(default_factory=dict)
    allowMultipleAllocations: bool = Field(
        default=False, description="shareable: each claim consumes part of the capacity"
    )
    consumesCounters: list[CounterConsumption] = Field(
        default_factory=list, max_length=MAX_COUNTER_SETS
    )
    taints: list[Taint] = Field(default_factory=list, max_length=MAX_TAINTS)

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not DNS1123_LABEL.match(value):
            raise ValueError(f"{value!r} is not a valid device name (DNS-1123 label)")
        return value

    @field_validator("driver")
    @classmethod
    def _driver(cls, value: str) -> str:
        if (problem := domain_name_problem(value, "driver name")) is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _names(self) -> Device:
        if len(self.attributes) + len(self.capacity) > MAX_ATTRIBUTES_AND_CAPACITIES:
            raise ValueError(
                f"at most {MAX_ATTRIBUTES_AND_CAPACITIES} attributes and capacities together"
            )
        for field, names in (("attributes", self.attributes), ("capacity", self.capacity)):
            seen: dict[str, str] = {}
            for name in names:
                if (problem := qualified_name_problem(name)) is not None:
                    raise ValueError(f"{field}: {problem}")
                # "model" on a gpu.nvidia.com device is gpu.nvidia.com/model: one name, once.
                full = name if "/" in name else f"{self.driver}/{name}"
                if full in seen:
                    raise ValueError(f"{field}: {name!r} and {seen[full]!r} name the same thing")
                seen[full] = name
        return self


class NodeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    devices: list[Device] = Field(default_factory=list, max_length=MAX_DEVICES)
    sharedCounters: list[CounterSet] = Field(default_factory=list, max_length=MAX_COUNTER_SETS)
    taints: list[Taint] = Field(default_factory=list, max_length=MAX_TAINTS)

    @model_validator(mode="after")
    def _references(self) -> NodeSpec:
        names = [device.name for device in self.devices]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"devices: names must be unique; {duplicates[0]!r} is repeated")
        sets = {counter_set.name: counter_set for counter_set in self.sharedCounters}
        if len(sets) != len(self.sharedCounters):
            raise ValueError("sharedCounters: names must be unique")
        for i, device in enumerate(self.devices):
            for j, use in enumerate(device.consumesCounters):
                where = f"devices[{i}].consumesCounters[{j}]"
                if use.counterSet not in sets:
                    raise ValueError(
                        f"{where}.counterSet: no shared counter set {use.counterSet!r}"
                    )
                unknown = sorted(set(use.counters) - set(sets[use.counterSet].counters))
                if unknown:
                    raise ValueError(
                        f"{where}.counters: {unknown[0]!r} is not a counter of {use.counterSet!r}"
                    )
        return self


class DeviceHealth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    health: Literal["Healthy", "Unhealthy", "Unknown"] = "Unknown"
    message: str = ""


class NodeStatus(ResourceStatus):
    devices: list[DeviceHealth] = Field(default_factory=list)
    heartbeatTime: str = Field(default="", description="RFC 3339; the node's last report")
    deviceCount: int = Field(default=0, description="devices on the node (for printing)")
    gpuCount: int = Field(default=0, description="GPU devices on the node (for printing)")


NODE = register_kind(
    KindInfo(
        kind="Node",
        plural="nodes",
        spec_model=NodeSpec,
        status_model=NodeStatus,
        namespaced=False,
        short_names=("no",),
        description="A machine and the devices (CPUs, GPUs) it offers to ResourceClaims.",
        printer_columns=(
            ("DEVICES", "status.deviceCount"),
            ("GPUS", "status.gpuCount"),
            ("HEARTBEAT", "status.heartbeatTime"),
        ),
    )
)
