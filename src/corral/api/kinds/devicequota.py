"""``DeviceQuota``: one team's claim queue and how many devices of each class it may hold.

Kueue's ClusterQueue on DRA device classes. A ResourceClaim names its queue in
``spec.queue`` (the DeviceQuota's name); the claim scheduler (``corral.devices.quotas``)
admits it only within the queue's nominal amount, plus what it may borrow from queues of the
same ``cohort`` (at most ``borrowingLimit`` over nominal). ``nominal`` is a quantity of devices
(``"8"``, or ``"2500m"`` for shares of shareable devices), or a map of capacity name to
quantity (``{memory: 320Gi}``). ``preemption`` says whom a pending claim of this queue may
evict: lower priorities in its own queue, and claims of cohort queues that are borrowing.

Cluster-scoped, like the cohort it belongs to; a queue without a DeviceQuota is not limited.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from corral.api.objects import DNS1123_SUBDOMAIN
from corral.api.registry import KindInfo, register_kind

# The quantity grammar of Kubernetes (checked fully by the scheduler when it reads the quota).
_QUANTITY = re.compile(
    r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$"
)

Quantity = str | int


def _quantity_problem(value: Quantity) -> str | None:
    if isinstance(value, bool):
        return "must be a quantity"
    if isinstance(value, int):
        return None if value >= 0 else f"{value} must be >= 0"
    return None if _QUANTITY.match(value.strip()) else f"{value!r} is not a quantity"


class DeviceQuotaLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deviceClassName: str = Field(min_length=1, max_length=253, description="the DeviceClass")
    nominal: Quantity | dict[str, Quantity] = Field(
        description="devices (e.g. 8, or 2500m of shares) or capacity name → quantity"
    )
    borrowingLimit: Quantity | dict[str, Quantity] | None = Field(
        default=None, description="most this queue may borrow over nominal; none: unlimited"
    )

    @field_validator("deviceClassName")
    @classmethod
    def _class_name(cls, value: str) -> str:
        if not DNS1123_SUBDOMAIN.match(value):
            raise ValueError(f"{value!r} is not a valid resource name (DNS-1123)")
        return value

    @model_validator(mode="after")
    def _amounts(self) -> DeviceQuotaLine:
        for label, amounts in (("nominal", self.nominal), ("borrowingLimit", self.borrowingLimit)):
            if amounts is None:
                continue
            items = amounts.items() if isinstance(amounts, dict) else [("", amounts)]
            for name, value in items:
                problem = _quantity_problem(value)
                if problem:
                    where = f"{label}.{name}" if name else label
                    raise ValueError(f"{where}: {problem}")
        if isinstance(self.borrowingLimit, dict) != isinstance(self.nominal, dict) and (
            self.borrowingLimit is not None
        ):
            raise ValueError("borrowingLimit must have the same form as nominal (map or amount)")
        return self


class DeviceQuotaPreemption(BaseModel):
    model_config = ConfigDict(extra="forbid")

    withinQueue: Literal["LowerPriority", "Never"] = Field(
        default="LowerPriority", description="evict lower-priority claims of this queue"
    )
    reclaimWithinCohort: Literal["Any", "LowerPriority", "Never"] = Field(
        default="Any", description="evict claims of cohort queues that borrow from this one"
    )


class DeviceQuotaSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team: str = Field(default="", max_length=253, description="the Team this queue serves")
    cohort: str = Field(default="", max_length=253, description="queues that lend to each other")
    quotas: list[DeviceQuotaLine] = Field(default_factory=list)
    preemption: DeviceQuotaPreemption = Field(default_factory=DeviceQuotaPreemption)

    @field_validator("quotas")
    @classmethod
    def _one_line_per_class(cls, lines: list[DeviceQuotaLine]) -> list[DeviceQuotaLine]:
        seen: set[str] = set()
        for line in lines:
            if line.deviceClassName in seen:
                raise ValueError(f"device class {line.deviceClassName!r} is listed twice")
            seen.add(line.deviceClassName)
        return lines


DEVICE_QUOTA = register_kind(
    KindInfo(
        kind="DeviceQuota",
        plural="devicequotas",
        spec_model=DeviceQuotaSpec,
        namespaced=False,
        short_names=("dq",),
        description="A team's claim queue: nominal devices per class, cohort borrowing.",
        printer_columns=(("TEAM", "spec.team"), ("COHORT", "spec.cohort")),
    )
)
