"""Kubernetes quantity and semver extensions: exact comparisons, arithmetic and parsing."""

from __future__ import annotations

import pytest

from corral.devices.cel import CelCompileError, CelEvaluationError, compile_selector
from corral.devices.cel_device import DeviceView
from corral.devices.cel_values import Semver

DEVICE = DeviceView.from_node_device(
    {
        "name": "gpu-0",
        "driver": "gpu.nvidia.com",
        "attributes": {
            "driverVersion": {"version": "550.54.15"},
            "cuda": {"version": "12.4.0-rc.1"},
        },
        "capacity": {"memory": {"value": "80Gi"}, "cores": {"value": "1500m"}},
    }
)


def holds(expression: str) -> bool:
    return compile_selector(expression).matches(DEVICE)


MEMORY = 'device.capacity["gpu.nvidia.com"].memory'
CORES = 'device.capacity["gpu.nvidia.com"].cores'
DRIVER = 'device.attributes["gpu.nvidia.com"].driverVersion'


@pytest.mark.parametrize(
    "expression",
    [
        f'{MEMORY}.compareTo(quantity("80Gi")) == 0',
        f'{MEMORY}.compareTo(quantity("81920Mi")) == 0',
        f'{MEMORY}.compareTo(quantity("85899345921")) == -1',
        f'{MEMORY}.compareTo(quantity("80G")) == 1',
        f'{MEMORY}.isGreaterThan(quantity("64Gi")) && {MEMORY}.isLessThan(quantity("0.1Ti"))',
        f"{MEMORY}.asInteger() == 85899345920",
        f"{MEMORY}.isInteger() && !{CORES}.isInteger()",
        f"{CORES}.asApproximateFloat() == 1.5",
        f'{CORES}.add(quantity("500m")) == quantity("2")',
        f'{CORES}.sub(1) == quantity("0.5") && {CORES}.add(2) == quantity("3.5")',
        f'{CORES}.sign() == 1 && quantity("-1m").sign() == -1 && quantity("0").sign() == 0',
        'isQuantity("1.5Gi") && !isQuantity("1.5 Gi") && !isQuantity("Gi")',
        'quantity("1e3") == quantity("1k") && quantity("1Ki") == quantity("1024")',
    ],
)
def test_quantities_compare_and_compute_exactly(expression: str) -> None:
    assert holds(expression), expression


def test_as_integer_of_a_fraction_or_an_overflow_is_an_error() -> None:
    with pytest.raises(CelEvaluationError, match="not an integer that fits in int64"):
        holds(f"{CORES}.asInteger() == 1")
    with pytest.raises(CelEvaluationError, match="not an integer that fits in int64"):
        holds(f'{MEMORY}.add(quantity("9Ei")).asInteger() > 0')


@pytest.mark.parametrize(
    "expression",
    [
        f'{DRIVER}.isGreaterThan(semver("550.0.0")) && {DRIVER}.isLessThan(semver("560.0.0"))',
        f'{DRIVER}.compareTo(semver("550.54.15")) == 0 && {DRIVER} == semver("550.54.15+build.7")',
        f"{DRIVER}.major() == 550 && {DRIVER}.minor() == 54 && {DRIVER}.patch() == 15",
        'device.attributes["gpu.nvidia.com"].cuda.isLessThan(semver("12.4.0"))',
        'semver("1.0.0-alpha").isLessThan(semver("1.0.0-alpha.1"))',
        'semver("1.0.0-alpha.beta").isLessThan(semver("1.0.0-beta"))',
        'semver("1.0.0-beta.2").isLessThan(semver("1.0.0-beta.11"))',
        'semver("1.0.0-rc.1").isLessThan(semver("1.0.0"))',
        'isSemver("1.2.3-rc.1+b5") && !isSemver("1.2") && !isSemver("01.2.3")',
        '!isSemver("v1.2.3") && !isSemver("")',
        'isSemver("v1.2", true) && semver("v1.02", true) == semver("1.2.0")',
    ],
)
def test_semvers_follow_semver_org_precedence(expression: str) -> None:
    assert holds(expression), expression


def test_comparing_a_quantity_with_a_semver_is_an_error() -> None:
    with pytest.raises(CelEvaluationError, match="compareTo: expected a quantity, got semver"):
        holds(f"{MEMORY}.compareTo({DRIVER}) == 0")


def test_a_bad_text_known_only_at_evaluation_is_an_error() -> None:
    with pytest.raises(CelEvaluationError, match=r"^CEL .* on device 'gpu-0': quantity: .*gpu"):
        holds('quantity(device.driver) == quantity("1")')


def test_a_bad_text_known_at_compile_time_fails_the_compile() -> None:
    with pytest.raises(CelCompileError, match=r"quantity: .*x80Gi"):
        compile_selector('quantity("x" + "80Gi") == quantity("1")')


def test_semver_ordering_sorts_pre_releases_before_the_release() -> None:
    texts = ["1.0.0", "1.0.0-rc.1", "1.0.0-beta.11", "1.0.0-beta.2", "1.0.0-alpha", "0.9.9"]
    ordered = [str(v) for v in sorted(Semver.parse(t) for t in texts)]
    assert ordered == [
        "0.9.9",
        "1.0.0-alpha",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
    ]
