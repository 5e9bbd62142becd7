"""The DeviceQuota kind: what its spec accepts and how bad amounts are reported."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from corral.api.kinds.devicequota import DEVICE_QUOTA, DeviceQuotaSpec


def test_amounts_maps_and_policies_are_accepted() -> None:
    spec = DeviceQuotaSpec.model_validate(
        {
            "team": "research",
            "cohort": "lab",
            "quotas": [
                {"deviceClassName": "gpu", "nominal": 8, "borrowingLimit": "4"},
                {"deviceClassName": "gpu-mem", "nominal": {"memory": "320Gi"}},
            ],
            "preemption": {"withinQueue": "Never", "reclaimWithinCohort": "LowerPriority"},
        }
    )
    assert spec.quotas[1].nominal == {"memory": "320Gi"}
    assert not DEVICE_QUOTA.namespaced
    assert DEVICE_QUOTA.plural == "devicequotas"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"deviceClassName": "gpu", "nominal": "lots"}, "nominal: 'lots' is not a quantity"),
        ({"deviceClassName": "gpu", "nominal": -1}, "nominal: -1 must be >= 0"),
        (
            {"deviceClassName": "gpu", "nominal": {"memory": "1Gi"}, "borrowingLimit": 2},
            "same form as nominal",
        ),
        ({"deviceClassName": "Bad_Name", "nominal": 1}, "not a valid resource name"),
    ],
)
def test_bad_lines_are_refused_with_the_field(line: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DeviceQuotaSpec.model_validate({"quotas": [line]})


def test_a_class_listed_twice_is_refused() -> None:
    line = {"deviceClassName": "gpu", "nominal": 1}
    with pytest.raises(ValidationError, match="listed twice"):
        DeviceQuotaSpec.model_validate({"quotas": [line, line]})


def test_unknown_preemption_policies_are_refused() -> None:
    with pytest.raises(ValidationError, match="withinQueue"):
        DeviceQuotaSpec.model_validate({"preemption": {"withinQueue": "Always"}})
