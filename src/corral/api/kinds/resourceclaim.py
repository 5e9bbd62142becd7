"""``ResourceClaim``: a request for devices (two H100s on one NVLink domain, 20Gi of a GPU).

Where this sits: a user, or the Endpoint controller for each replica, applies a claim; the
claim scheduler (``corral.devices``) queues it in ``spec.queue`` (a DeviceQuota) by
``spec.priority``, allocates devices on one Node and writes ``status.allocation``; the runtime
that uses the devices is listed in ``status.reservedFor``. The shape is Kubernetes
``resource.k8s.io/v1`` ResourceClaim plus corral's queueing fields:

- each request is ``exactly`` one device choice (class, selectors, ``ExactCount`` of ``count``
  or ``All``, ``capacity.requests`` for a share of a shareable device) or ``firstAvailable``:
  alternatives tried in order;
- a constraint's ``matchAttribute`` (``domain/name``) makes the devices of the named requests
  (all, when none are named) agree on that attribute.

Selectors are compiled at apply time by the check :mod:`corral.api.kinds.deviceclass` runs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from corral.api.kinds.deviceclass import (
    MAX_SELECTORS,
    DeviceSelector,
    OpaqueConfig,
    check_selectors,
)
from corral.api.kinds.node import qualified_name_problem
from corral.api.objects import DNS1123_LABEL, DNS1123_SUBDOMAIN, Condition, ResourceStatus
from corral.api.quantity import Quantity
from corral.api.registry import KindInfo, register_kind

MAX_REQUESTS = 32
MAX_SUBREQUESTS = 8
MAX_CONSTRAINTS = 32
MAX_COUNT = 1024
MAX_PRIORITY = 1_000_000_000


def _request_name(value: str) -> str:
    if not DNS1123_LABEL.match(value):
        raise ValueError(f"{value!r} is not a valid request name (DNS-1123 label)")
    return value


def _class_name(value: str) -> str:
    if not DNS1123_SUBDOMAIN.match(value):
        raise ValueError(f"{value!r} is not a valid DeviceClass name (DNS-1123)")
    return value


class CapacityRequirements(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="capacity name -> amount, e.g. memory: 20Gi"
    )

    @field_validator("requests")
    @classmethod
    def _names(cls, requests: dict[str, Quantity]) -> dict[str, Quantity]:
        for name in requests:
            if (problem := qualified_name_problem(name)) is not None:
                raise ValueError(problem)
        return requests


class _DeviceChoice(BaseModel):
    """What ``exactly`` and each ``firstAvailable`` alternative have in common."""

    model_config = ConfigDict(extra="forbid")

    deviceClassName: str = Field(min_length=1, max_length=253)
    selectors: list[DeviceSelector] = Field(default_factory=list, max_length=MAX_SELECTORS)
    allocationMode: Literal["ExactCount", "All"] = "ExactCount"
    count: int | None = Field(default=None, ge=1, le=MAX_COUNT, description="default 1")
    capacity: CapacityRequirements | None = None

    _class = field_validator("deviceClassName")(_class_name)

    @model_validator(mode="after")
    def _count_for_exact_count(self) -> _DeviceChoice:
        if self.allocationMode == "All":
            if self.count is not None:
                raise ValueError("count: only with allocationMode ExactCount")
        elif self.count is None:
            self.count = 1
        return self


class ExactDeviceRequest(_DeviceChoice):
    pass


class DeviceSubRequest(_DeviceChoice):
    name: str = Field(min_length=1, max_length=63)

    _name = field_validator("name")(_request_name)


class DeviceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=63, description="unique within the claim")
    exactly: ExactDeviceRequest | None = None
    firstAvailable: list[DeviceSubRequest] | None = Field(
        default=None, min_length=1, max_length=MAX_SUBREQUESTS
    )

    _name = field_validator("name")(_request_name)

    @model_validator(mode="after")
    def _one_form(self) -> DeviceRequest:
        if (self.exactly is None) == (self.firstAvailable is None):
            raise ValueError("set exactly one of exactly, firstAvailable")
        names = [sub.name for sub in self.firstAvailable or []]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"firstAvailable: names must be unique; {repeated[0]!r} is repeated")
        return self


class DeviceConstraint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[str] = Field(default_factory=list, description="request names; none: all")
    matchAttribute: str = Field(min_length=1, max_length=96, description="e.g. gpu.nvidia.com/x")

    @field_validator("matchAttribute")
    @classmethod
    def _qualified(cls, value: str) -> str:
        if (problem := qualified_name_problem(value, require_domain=True)) is not None:
            raise ValueError(problem)
        return value


class DeviceClaimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[str] = Field(default_factory=list, description="request names; none: all")
    opaque: OpaqueConfig


class DeviceClaim(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[DeviceRequest] = Field(min_length=1, max_length=MAX_REQUESTS)
    constraints: list[DeviceConstraint] = Field(default_factory=list, max_length=MAX_CONSTRAINTS)
    config: list[DeviceClaimConfig] = Field(default_factory=list, max_length=MAX_REQUESTS)

    @model_validator(mode="after")
    def _references(self) -> DeviceClaim:
        names = [request.name for request in self.requests]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"requests: names must be unique; {repeated[0]!r} is repeated")
        # A constraint or config may name a request, or one alternative of it as request/sub.
        known = set(names) | {
            f"{request.name}/{sub.name}"
            for request in self.requests
            for sub in request.firstAvailable or []
        }
        listed = [("constraints", i, c.requests) for i, c in enumerate(self.constraints)]
        listed += [("config", i, c.requests) for i, c in enumerate(self.config)]
        for field, i, requests in listed:
            for name in requests:
                if name not in known:
                    raise ValueError(f"{field}[{i}].requests: no request named {name!r}")
        return self


class ResourceClaimSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    devices: DeviceClaim
    priority: int = Field(
        default=0, ge=-MAX_PRIORITY, le=MAX_PRIORITY, description="higher is scheduled first"
    )
    queue: str = Field(
        default="",
        max_length=253,
        description="the DeviceQuota to queue in; empty: the namespace's corral.dev/queue label, "
        "else 'default'",
    )

    @field_validator("queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if value and not DNS1123_SUBDOMAIN.match(value):
            raise ValueError(f"{value!r} is not a valid DeviceQuota name (DNS-1123)")
        return value


class DeviceRequestResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request: str = Field(description="the request, or request/alternative for firstAvailable")
    driver: str
    pool: str = Field(description="the Node the device is on")
    device: str
    consumedCapacity: dict[str, Quantity] = Field(default_factory=dict)


class DeviceAllocationResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    results: list[DeviceRequestResult] = Field(default_factory=list)
    config: list[dict[str, Any]] = Field(default_factory=list)


class AllocationResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nodeName: str
    devices: DeviceAllocationResult = Field(default_factory=DeviceAllocationResult)


class ConsumerReference(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    name: str
    uid: str = ""


class ResourceClaimStatus(ResourceStatus):
    allocation: AllocationResult | None = None
    reservedFor: list[ConsumerReference] = Field(default_factory=list)
    conditions: list[Condition] = Field(
        default_factory=list, description="Allocated, Preempted, Unschedulable"
    )


RESOURCE_CLAIM = register_kind(
    KindInfo(
        kind="ResourceClaim",
        plural="resourceclaims",
        spec_model=ResourceClaimSpec,
        status_model=ResourceClaimStatus,
        short_names=("rc",),
        description="A request for devices: classes, selectors, counts, shares, constraints.",
        printer_columns=(
            ("QUEUE", "spec.queue"),
            ("PRIORITY", "spec.priority"),
            ("NODE", "status.allocation.nodeName"),
        ),
        check_spec=check_selectors,
    )
)
