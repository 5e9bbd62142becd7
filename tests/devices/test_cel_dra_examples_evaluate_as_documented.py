"""The selectors in the Kubernetes DRA documentation select the devices the docs say they do.

Examples: the DeviceClass and ResourceClaimTemplate of kubernetes.io "Dynamic Resource
Allocation" (driver.example.com) and the field layout of the CELDeviceSelector API reference
(a driver's own attribute "model", a qualified "ext.example.com/family", a capacity "modules").
"""

from __future__ import annotations

from typing import Any

import pytest

from corral.devices.cel import compile_selector
from corral.devices.cel_device import DeviceView, DeviceViewError


def device(**fields: Any) -> DeviceView:
    entry = {"name": "dev-0", "driver": "driver.example.com", **fields}
    return DeviceView.from_node_device(entry)


GPU_64 = device(
    attributes={"type": {"string": "gpu"}},
    capacity={"memory": {"value": "64Gi"}},
)
GPU_32 = device(
    attributes={"type": {"string": "gpu"}},
    capacity={"memory": {"value": "32Gi"}},
)
FPGA = device(attributes={"type": {"string": "fpga"}}, capacity={"memory": {"value": "64Gi"}})
OTHER_DRIVER = DeviceView.from_node_device(
    {"name": "x", "driver": "other.example.com", "attributes": {"type": {"string": "gpu"}}}
)


def test_the_device_class_example_selects_by_driver() -> None:
    selector = compile_selector('device.driver == "driver.example.com"')
    assert [selector.matches(d) for d in (GPU_64, FPGA, OTHER_DRIVER)] == [True, True, False]


def test_the_claim_template_example_selects_64gi_gpus() -> None:
    selector = compile_selector(
        'device.attributes["driver.example.com"].type == "gpu" &&\n'
        'device.capacity["driver.example.com"].memory == quantity("64Gi")'
    )
    assert [selector.matches(d) for d in (GPU_64, GPU_32, FPGA)] == [True, False, False]
    # A quantity is equal by value, whatever the spelling on the Node.
    assert selector.matches(
        device(attributes={"type": {"string": "gpu"}}, capacity={"memory": {"value": "65536Mi"}})
    )


def test_short_names_belong_to_the_driver_domain_and_qualified_names_to_theirs() -> None:
    dev = device(
        attributes={
            "model": {"string": "LATEST-GPU-MODEL"},
            "ext.example.com/family": {"string": "a"},
        },
        capacity={"modules": {"value": "4"}},
    )
    assert dev.attributes == {
        "driver.example.com": {"model": "LATEST-GPU-MODEL"},
        "ext.example.com": {"family": "a"},
    }
    selector = compile_selector(
        'device.attributes["driver.example.com"].model == "LATEST-GPU-MODEL" && '
        'device.attributes["ext.example.com"].family == "a" && '
        'device.capacity["driver.example.com"].modules.asInteger() == 4'
    )
    assert selector.matches(dev)


def test_attribute_types_reach_cel_as_int_bool_string_and_semver() -> None:
    dev = device(
        attributes={
            "index": {"int": 3},
            "mig": {"bool": True},
            "arch": {"string": "hopper"},
            "driverVersion": {"version": "550.54.15"},
        },
        capacity={"memory": {"value": "80Gi"}},
        allowMultipleAllocations=True,
    )
    selector = compile_selector(
        'device.attributes["driver.example.com"].index + 1 == 4 && '
        'device.attributes["driver.example.com"].mig && '
        'device.attributes["driver.example.com"].arch.upperAscii() == "HOPPER" && '
        'device.attributes["driver.example.com"].driverVersion.minor() == 54 && '
        "device.allowMultipleAllocations"
    )
    assert selector.matches(dev)


def test_string_extensions_are_available() -> None:
    dev = device(attributes={"productName": {"string": "NVIDIA H100 80GB HBM3"}})
    name = 'device.attributes["driver.example.com"].productName'
    for expression in (
        f'{name}.startsWith("NVIDIA")',
        f'{name}.endsWith("HBM3")',
        f'{name}.contains("H100")',
        f'{name}.matches("H1[0-9]{{2}}")',
        f'{name}.lowerAscii().contains("nvidia h100")',
        f'{name}.split(" ")[1] == "H100"',
        f'{name}.indexOf("H100") == 7',
        f'{name}.replace("NVIDIA ", "").substring(0, 4) == "H100"',
        f'"  x ".trim() == "x" && size({name}) == 21',
    ):
        assert compile_selector(expression).matches(dev), expression


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"driver": ""}, "device.driver: must be a non-empty string"),
        (
            {"driver": "d", "attributes": {"a": {"int": "7"}}},
            "device.attributes.a.int: must be a int",
        ),
        (
            {"driver": "d", "attributes": {"a": {"int": 1, "bool": True}}},
            "device.attributes.a: must",
        ),
        ({"driver": "d", "attributes": {"v": {"version": "1.2"}}}, "device.attributes.v.version"),
        ({"driver": "d", "capacity": {"m": {"value": "lots"}}}, "device.capacity.m.value"),
        ({"driver": "d", "allowMultipleAllocations": "yes"}, "device.allowMultipleAllocations"),
    ],
)
def test_a_malformed_node_device_names_the_field(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(DeviceViewError, match=message.replace(".", r"\.")):
        DeviceView.from_node_device(entry)
