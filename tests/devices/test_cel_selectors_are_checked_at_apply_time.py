"""Every selector of a DeviceClass or ResourceClaim spec is compiled when the object is applied;
one that does not compile is reported at its own field path with its position."""

from __future__ import annotations

from typing import Any

import pytest

from corral.devices.cel_checks import selector_problems

GOOD = 'device.driver == "gpu.nvidia.com"'


def cel(expression: Any) -> dict[str, Any]:
    return {"cel": {"expression": expression}}


def test_a_device_class_with_good_selectors_has_no_problems() -> None:
    assert selector_problems({"selectors": [cel(GOOD), cel("true")]}) == []


def test_a_device_class_selector_that_does_not_compile_is_named() -> None:
    problems = selector_problems({"selectors": [cel(GOOD), cel("device.driver ==")]})
    assert len(problems) == 1
    path, message = problems[0]
    assert path == "spec.selectors[1].cel.expression"
    assert message.startswith("CEL does not compile: line 1, column 17: Syntax error")


def test_claim_requests_and_their_alternatives_are_all_checked() -> None:
    spec = {
        "devices": {
            "requests": [
                {"name": "a", "exactly": {"deviceClassName": "gpu", "selectors": [cel(GOOD)]}},
                {
                    "name": "b",
                    "firstAvailable": [
                        {"name": "big", "deviceClassName": "gpu", "selectors": [cel("nope(1)")]},
                        {"name": "small", "deviceClassName": "gpu", "selectors": [cel(None)]},
                    ],
                },
                {"name": "c", "exactly": {"selectors": [cel('quantity("x") == device')]}},
            ]
        }
    }
    problems = selector_problems(spec)
    assert problems[:2] == [
        (
            "spec.devices.requests[1].firstAvailable[0].selectors[0].cel.expression",
            "CEL does not compile: line 1, column 1: undeclared function 'nope'",
        ),
        (
            "spec.devices.requests[1].firstAvailable[1].selectors[0].cel.expression",
            "CEL does not compile: line 1, column 1: must be a non-empty CEL expression",
        ),
    ]
    path, message = problems[2]
    assert path == "spec.devices.requests[2].exactly.selectors[0].cel.expression"
    assert message.startswith("CEL does not compile: line 1, column 10: quantity: ")
    assert len(problems) == 3


def test_a_spec_that_is_not_a_mapping_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="expected a DeviceClass or ResourceClaim spec"):
        selector_problems(["not", "a", "spec"])
