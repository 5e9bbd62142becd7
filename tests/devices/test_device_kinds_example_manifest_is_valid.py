"""The shipped device example (examples/devices/gpu-fleet.yaml) passes the write gate with the
real CEL compiler installed, and a selector that does not compile is refused at its path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import corral.api.kinds.node
import corral.api.kinds.resourceclaim  # noqa: F401  (registers the kinds)
from corral.api.errors import Invalid
from corral.api.kinds.deviceclass import use_selector_check
from corral.api.manifest import load_manifests
from corral.api.validation import validate_documents, validate_object
from corral.devices.cel_checks import selector_problems

EXAMPLE = Path(__file__).parents[2] / "examples" / "devices" / "gpu-fleet.yaml"


@pytest.fixture(autouse=True)
def cel_check() -> Iterator[None]:
    use_selector_check(selector_problems)
    yield
    use_selector_check(None)


def test_the_example_fleet_classes_and_claims_are_valid() -> None:
    documents = load_manifests([str(EXAMPLE)])
    valid, problems = validate_documents((d.body, d.location) for d in documents)
    assert problems == []
    assert [obj["kind"] for obj, _ in valid] == [
        "Node",
        "Node",
        "DeviceClass",
        "DeviceClass",
        "DeviceClass",
        "ResourceClaim",
        "ResourceClaim",
    ]


def test_a_selector_that_does_not_compile_is_refused_at_apply() -> None:
    (document,) = [d for d in load_manifests([str(EXAMPLE)]) if "chat-replica" in str(d.body)]
    request = document.body["spec"]["devices"]["requests"][0]
    request["firstAvailable"][0]["selectors"][0]["cel"]["expression"] = "device.model =="
    with pytest.raises(Invalid) as caught:
        validate_object(document.body, location=document.location)
    (cause,) = caught.value.causes
    assert cause.path == "spec.devices.requests[0].firstAvailable[0].selectors[0].cel.expression"
    assert cause.message.startswith("CEL does not compile: line 1, column")
