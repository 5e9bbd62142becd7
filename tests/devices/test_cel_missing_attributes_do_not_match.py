"""A device without the attribute a selector reads does not match; other failures are errors.

DRA's rule: a missing attribute, capacity or domain makes the selector false for that device;
any other runtime error (wrong types, a function on the wrong value, a non-bool result) is
reported with the expression and the device, so it can become a claim condition.
"""

from __future__ import annotations

import pytest

from corral.devices.cel import CelEvaluationError, compile_selector
from corral.devices.cel_device import DeviceView

PLAIN = DeviceView.from_node_device(
    {
        "name": "gpu-7",
        "driver": "gpu.nvidia.com",
        "attributes": {"model": {"string": "L4"}},
        "capacity": {"memory": {"value": "24Gi"}},
    }
)


@pytest.mark.parametrize(
    "expression",
    [
        'device.attributes["gpu.nvidia.com"].mig == true',
        'device.attributes["gpu.nvidia.com"]["mig"]',
        'device.capacity["gpu.nvidia.com"].sm.isGreaterThan(quantity("1"))',
        'device.attributes["cuda.dev"].mig',
        'device.capacity["cuda.dev"].memory == quantity("24Gi")',
    ],
)
def test_reading_a_missing_field_or_domain_does_not_match(expression: str) -> None:
    assert compile_selector(expression).matches(PLAIN) is False


def test_an_unknown_domain_reads_as_an_empty_map_as_in_kubernetes() -> None:
    assert compile_selector('!has(device.attributes["cuda.dev"].mig)').matches(PLAIN)
    assert compile_selector('!("mig" in device.attributes["cuda.dev"])').matches(PLAIN)
    assert compile_selector('size(device.capacity["cuda.dev"]) == 0').matches(PLAIN)


def test_a_robust_selector_checks_before_reading() -> None:
    selector = compile_selector(
        'has(device.attributes["gpu.nvidia.com"].mig) ? device.attributes["gpu.nvidia.com"].mig'
        ' : device.attributes["gpu.nvidia.com"].model == "L4"'
    )
    assert selector.matches(PLAIN)


def test_a_type_error_is_raised_naming_the_expression_and_device() -> None:
    expression = 'device.attributes["gpu.nvidia.com"].model > 3'
    with pytest.raises(CelEvaluationError) as caught:
        compile_selector(expression).matches(PLAIN)
    assert caught.value.expression == expression
    assert caught.value.device == "gpu-7"
    assert str(caught.value).startswith(f"CEL expression {expression!r} on device 'gpu-7': ")


def test_an_extension_on_the_wrong_value_is_raised_with_its_reason() -> None:
    selector = compile_selector('device.attributes["gpu.nvidia.com"].model.asInteger() == 1')
    with pytest.raises(CelEvaluationError) as caught:
        selector.matches(PLAIN)
    assert caught.value.reason == "asInteger: expected a quantity, got string"


def test_a_non_bool_result_seen_only_on_a_device_is_an_evaluation_error() -> None:
    selector = compile_selector('device.attributes["gpu.nvidia.com"].model')
    with pytest.raises(CelEvaluationError, match="must evaluate to a bool, got string"):
        selector.matches(PLAIN)
