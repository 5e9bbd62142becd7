"""Node, DeviceClass and ResourceClaim: Kubernetes-shaped specs are accepted and defaulted; every
bad field is refused at its own path with a message that names it."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

import corral.api.kinds.deviceclass as deviceclass
import corral.api.kinds.node
import corral.api.kinds.resourceclaim  # noqa: F401  (registers the kind)
from corral.api.errors import Invalid
from corral.api.objects import API_VERSION
from corral.api.registry import lookup_kind
from corral.api.schema import kind_json_schema
from corral.api.validation import validate_object


def node(**spec: Any) -> dict[str, Any]:
    devices = [
        {
            "name": "gpu0",
            "driver": "gpu.nvidia.com",
            "attributes": {
                "model": {"string": "H100"},
                "index": {"int": 0},
                "mig": {"bool": False},
                "driverVersion": {"version": "550.54.15"},
                "gpu.nvidia.com/nvlinkDomain": {"int": 0},
            },
            "capacity": {"memory": {"value": "80Gi"}, "compute": {"value": 1}},
            "allowMultipleAllocations": True,
        }
    ]
    return {
        "apiVersion": API_VERSION,
        "kind": "Node",
        "metadata": {"name": "gpu-node-1"},
        "spec": {"devices": devices, **spec},
    }


def claim(**devices: Any) -> dict[str, Any]:
    requests = [{"name": "gpus", "exactly": {"deviceClassName": "gpu", "count": 2}}]
    return {
        "apiVersion": API_VERSION,
        "kind": "ResourceClaim",
        "metadata": {"name": "train", "namespace": "ml"},
        "spec": {"devices": {"requests": requests, **devices}},
    }


def problems(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(Invalid) as caught:
        validate_object(doc)
    return {cause.path: cause.message for cause in caught.value.causes}


def test_the_kinds_are_registered_with_scope_and_short_names() -> None:
    for alias, kind, namespaced in (
        ("no", "Node", False),
        ("nodes", "Node", False),
        ("dc", "DeviceClass", False),
        ("deviceclasses", "DeviceClass", False),
        ("rc", "ResourceClaim", True),
        ("resourceclaims", "ResourceClaim", True),
    ):
        info = lookup_kind(alias)
        assert info is not None
        assert info.kind == kind
        assert info.namespaced is namespaced
        schema = kind_json_schema(info)
        assert schema["additionalProperties"] is False
        assert "spec" in schema["properties"]


def test_a_gpu_node_is_accepted_with_defaults_filled_in() -> None:
    obj = validate_object(node())
    device = obj["spec"]["devices"][0]
    assert device["attributes"]["driverVersion"] == {"version": "550.54.15"}
    assert device["attributes"]["index"] == {"int": 0}
    assert device["capacity"] == {"memory": {"value": "80Gi"}, "compute": {"value": 1}}
    assert device["taints"] == []
    assert obj["spec"]["sharedCounters"] == []


def test_a_float_quantity_is_stored_as_its_canonical_text() -> None:
    doc = node()
    doc["spec"]["devices"][0]["capacity"]["compute"] = {"value": 0.5}
    assert validate_object(doc)["spec"]["devices"][0]["capacity"]["compute"] == {"value": "500m"}


def test_node_fields_are_refused_at_their_paths() -> None:
    doc = node(taints=[{"key": "maintenance", "effect": "Sometimes"}], extra=1)
    device = doc["spec"]["devices"][0]
    device["attributes"]["x"] = {"int": True}
    device["attributes"]["y"] = {"string": "a", "int": 1}
    device["attributes"]["z"] = {}
    device["attributes"]["driverVersion"] = {"version": "550.54"}
    device["capacity"]["memory"] = {"value": "80 GB"}
    device["capacity"]["negative"] = {"value": "-1"}
    device["colour"] = "green"
    found = problems(doc)
    at = "spec.devices[0]"
    assert "not a semantic version" in found[f"{at}.attributes.driverVersion.version"]
    assert "'550.54'" in found[f"{at}.attributes.driverVersion.version"]
    assert "integer" in found[f"{at}.attributes.x.int"]
    assert "exactly one of string, int, bool, version" in found[f"{at}.attributes.y"]
    assert "exactly one of" in found[f"{at}.attributes.z"]
    assert "'80 GB' is not a quantity" in found[f"{at}.capacity.memory.value"]
    assert "negative" in found[f"{at}.capacity.negative.value"]
    assert found[f"{at}.colour"] == "unknown field"
    assert found["spec.extra"] == "unknown field"
    assert "NoSchedule" in found["spec.taints[0].effect"]


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (lambda d: d.update(name="GPU_0"), "spec.devices[0].name", "DNS-1123 label"),
        (lambda d: d.update(driver="NVIDIA"), "spec.devices[0].driver", "DNS subdomain"),
        (
            lambda d: d["attributes"].update({"bad-name": {"int": 1}}),
            "spec.devices[0]",
            "C identifier",
        ),
        (
            lambda d: d["attributes"].update({"gpu.nvidia.com/model": {"string": "A100"}}),
            "spec.devices[0]",
            "name the same thing",
        ),
        (
            lambda d: d["capacity"].update({f"c{i}": {"value": 1} for i in range(40)}),
            "spec.devices[0]",
            "at most 32",
        ),
        (
            lambda d: d.update(consumesCounters=[{"counterSet": "slices", "counters": {}}]),
            "spec.devices[0].consumesCounters[0].counters",
            "at least 1",
        ),
    ],
)
def test_a_bad_device_is_named(change: Any, path: str, words: str) -> None:
    doc = node()
    change(doc["spec"]["devices"][0])
    found = problems(doc)
    assert words in found[path], found


def test_device_names_are_unique_and_counters_refer_to_shared_sets() -> None:
    doc = node()
    doc["spec"]["devices"].append(copy.deepcopy(doc["spec"]["devices"][0]))
    assert "'gpu0' is repeated" in problems(doc)["spec"]

    doc = node(sharedCounters=[{"name": "gpu0-slices", "counters": {"memory": {"value": "80Gi"}}}])
    use = {"counterSet": "gpu0-slices", "counters": {"memory": {"value": "10Gi"}}}
    doc["spec"]["devices"][0]["consumesCounters"] = [use]
    assert validate_object(doc)["spec"]["devices"][0]["consumesCounters"][0] == use
    use["counterSet"] = "elsewhere"
    assert "no shared counter set 'elsewhere'" in problems(doc)["spec"]
    use.update(counterSet="gpu0-slices", counters={"sm": {"value": 1}})
    assert "'sm' is not a counter of 'gpu0-slices'" in problems(doc)["spec"]


def test_a_device_class_is_cluster_scoped_with_selectors() -> None:
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "DeviceClass",
        "metadata": {"name": "h100"},
        "spec": {
            "selectors": [{"cel": {"expression": 'device.driver == "gpu.nvidia.com"'}}],
            "config": [{"opaque": {"driver": "gpu.nvidia.com", "parameters": {"mps": True}}}],
        },
    }
    assert validate_object(doc)["spec"]["selectors"][0]["cel"]["expression"].startswith("device")
    doc["spec"]["selectors"].append({"cel": {"expression": "  "}})
    doc["spec"]["selectors"].append({"cel": {"expr": "true"}})
    doc["metadata"]["namespace"] = "ml"
    found = problems(doc)
    assert "non-empty" in found["spec.selectors[1].cel.expression"]
    assert found["spec.selectors[2].cel.expr"] == "unknown field"
    assert "cluster-scoped" in found["metadata.namespace"]


@pytest.fixture
def refuse_false() -> Iterator[list[Any]]:
    """A stand-in for the CEL compiler: refuses the selector text 'false', records the specs."""
    seen: list[Any] = []

    def check(spec: Any) -> list[tuple[str, str]]:
        seen.append(spec)
        dumped = spec.model_dump(mode="json")
        selectors = dumped.get("selectors") or []
        return [
            (f"spec.selectors[{i}].cel.expression", "CEL does not compile: line 1, column 1")
            for i, s in enumerate(selectors)
            if s["cel"]["expression"] == "false"
        ]

    deviceclass.use_selector_check(check)
    yield seen
    deviceclass.use_selector_check(None)


def test_the_installed_selector_check_runs_at_the_write_gate(refuse_false: list[Any]) -> None:
    doc = {
        "apiVersion": API_VERSION,
        "kind": "DeviceClass",
        "metadata": {"name": "never"},
        "spec": {"selectors": [{"cel": {"expression": "true"}}, {"cel": {"expression": "false"}}]},
    }
    assert problems(doc) == {
        "spec.selectors[1].cel.expression": "CEL does not compile: line 1, column 1"
    }
    validate_object(claim())
    assert [type(spec).__name__ for spec in refuse_false] == [
        "DeviceClassSpec",
        "ResourceClaimSpec",
    ]


def test_without_a_check_installed_only_the_schema_is_checked() -> None:
    assert deviceclass.check_selectors(object()) == []


def test_a_claim_is_defaulted_the_kubernetes_way() -> None:
    spec = validate_object(claim())["spec"]
    assert spec["priority"] == 0
    assert spec["queue"] == ""
    exactly = spec["devices"]["requests"][0]["exactly"]
    assert exactly["allocationMode"] == "ExactCount"
    assert exactly["count"] == 2
    doc = claim()
    doc["spec"]["devices"]["requests"][0]["exactly"].pop("count")
    assert validate_object(doc)["spec"]["devices"]["requests"][0]["exactly"]["count"] == 1


def test_first_available_alternatives_and_constraints_are_checked() -> None:
    alternatives = [
        {"name": "big", "deviceClassName": "h100", "capacity": {"requests": {"memory": "40Gi"}}},
        {"name": "any", "deviceClassName": "gpu", "allocationMode": "All"},
    ]
    doc = claim(
        constraints=[
            {"requests": ["gpus", "one/big"], "matchAttribute": "gpu.nvidia.com/nvlinkDomain"}
        ]
    )
    doc["spec"]["devices"]["requests"].append({"name": "one", "firstAvailable": alternatives})
    spec = validate_object(doc)["spec"]
    assert spec["devices"]["requests"][1]["firstAvailable"][0]["count"] == 1
    assert "count" not in spec["devices"]["requests"][1]["firstAvailable"][1]


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (
            lambda s: s["devices"]["requests"][0].update(firstAvailable=[]),
            "spec.devices.requests[0].firstAvailable",
            "at least 1",
        ),
        (
            lambda s: s["devices"]["requests"][0].update(
                firstAvailable=[{"name": "a", "deviceClassName": "gpu"}]
            ),
            "spec.devices.requests[0]",
            "exactly one of exactly, firstAvailable",
        ),
        (
            lambda s: s["devices"]["requests"][0].pop("exactly"),
            "spec.devices.requests[0]",
            "exactly one of exactly, firstAvailable",
        ),
        (
            lambda s: s["devices"]["requests"].append(copy.deepcopy(s["devices"]["requests"][0])),
            "spec.devices",
            "'gpus' is repeated",
        ),
        (
            lambda s: s["devices"].update(constraints=[{"matchAttribute": "nvlinkDomain"}]),
            "spec.devices.constraints[0].matchAttribute",
            "domain/name",
        ),
        (
            lambda s: s["devices"].update(
                constraints=[{"requests": ["cpus"], "matchAttribute": "a.b/c"}]
            ),
            "spec.devices",
            "constraints[0].requests: no request named 'cpus'",
        ),
        (
            lambda s: s["devices"]["requests"][0]["exactly"].update(allocationMode="All"),
            "spec.devices.requests[0].exactly",
            "count: only with allocationMode ExactCount",
        ),
        (
            lambda s: s["devices"]["requests"][0]["exactly"].update(count=0),
            "spec.devices.requests[0].exactly.count",
            "greater than or equal to 1",
        ),
        (
            lambda s: s["devices"]["requests"][0]["exactly"].update(
                capacity={"requests": {"memory": "lots"}}
            ),
            "spec.devices.requests[0].exactly.capacity.requests.memory",
            "'lots' is not a quantity",
        ),
        (
            lambda s: s["devices"]["requests"][0]["exactly"].update(deviceClassName="GPU"),
            "spec.devices.requests[0].exactly.deviceClassName",
            "DNS-1123",
        ),
        (lambda s: s.update(queue="Team A"), "spec.queue", "DeviceQuota name"),
        (lambda s: s.update(priority="high"), "spec.priority", "integer"),
        (lambda s: s["devices"].update(requests=[]), "spec.devices.requests", "at least 1"),
    ],
)
def test_a_bad_claim_is_named(change: Any, path: str, words: str) -> None:
    doc = claim()
    change(doc["spec"])
    found = problems(doc)
    assert words in found[path], found
