"""Selector answers are shared by devices CEL cannot tell apart, and only by those.

The cache is what makes CEL affordable on 40,000 devices; a wrong share would hand a claim a
device its selector rejects. So: devices that differ in anything the selector reads get their
own answers; devices that differ only in what it does not read share one evaluation.
"""

from __future__ import annotations

from typing import Any

import pytest

from corral.devices.cel import CelEvaluationError, compile_selector
from corral.devices.cel_cache import SelectorCache, device_predicate, match_devices
from corral.devices.cel_device import DeviceView, DeviceViewError


def entry(name: str, model: str, memory: str, **attributes: Any) -> dict[str, Any]:
    return {
        "name": name,
        "driver": "gpu.nvidia.com",
        "attributes": {"model": {"string": model}, **attributes},
        "capacity": {"memory": {"value": memory}},
    }


def fleet() -> list[dict[str, Any]]:
    devices = []
    for node in range(50):
        model, memory = [("A100", "40Gi"), ("A100", "80Gi"), ("H100", "80Gi")][node % 3]
        for index in range(8):
            uuid = {"uuid": {"string": f"GPU-{node}-{index}"}, "index": {"int": index}}
            devices.append(entry(f"n{node}-gpu{index}", model, memory, **uuid))
    return devices


SELECTOR = (
    'device.attributes["gpu.nvidia.com"].model == "A100" && '
    'device.capacity["gpu.nvidia.com"].memory.isGreaterThan(quantity("64Gi"))'
)


def test_cached_answers_equal_uncached_ones_on_a_mixed_fleet() -> None:
    selector = compile_selector(SELECTOR)
    views = [DeviceView.from_node_device(d) for d in fleet()]
    direct = [selector.matches(v) for v in views]
    cache = SelectorCache()
    assert match_devices(selector, views, cache) == direct
    assert match_devices(selector, views, cache) == direct
    assert sum(direct) == 17 * 8  # the A100-80Gi nodes: 1, 4, ..., 49
    predicate = device_predicate(SELECTOR)
    assert [predicate(d) for d in fleet()] == direct


def test_devices_differing_only_in_unread_attributes_share_one_evaluation() -> None:
    selector = compile_selector(SELECTOR)
    assert selector.fields == (
        ("attributes", "gpu.nvidia.com", "model"),
        ("capacity", "gpu.nvidia.com", "memory"),
    )
    cache = SelectorCache()
    match_devices(selector, [DeviceView.from_node_device(d) for d in fleet()], cache)
    assert (cache.misses, cache.hits) == (3, 397)  # three kinds of device; uuids not read


def test_a_change_in_a_read_attribute_gets_its_own_answer() -> None:
    selector = compile_selector(SELECTOR)
    cache = SelectorCache()
    a100 = DeviceView.from_node_device(entry("a", "A100", "80Gi"))
    h100 = DeviceView.from_node_device(entry("b", "H100", "80Gi"))
    small = DeviceView.from_node_device(entry("c", "A100", "40Gi"))
    same_in_mebibytes = DeviceView.from_node_device(entry("d", "A100", "81920Mi"))
    assert [cache.matches(selector, d) for d in (a100, h100, small, same_in_mebibytes)] == [
        True,
        False,
        False,
        True,
    ]
    assert cache.misses == 3  # 80Gi and 81920Mi are one quantity


def test_values_equal_in_python_but_not_in_cel_are_not_shared() -> None:
    selector = compile_selector('device.attributes["gpu.nvidia.com"].flag == true')
    cache = SelectorCache()
    as_bool = DeviceView.from_node_device(entry("a", "A100", "1", flag={"bool": True}))
    as_int = DeviceView.from_node_device(entry("b", "A100", "1", flag={"int": 1}))
    assert cache.matches(selector, as_bool) is True
    assert cache.matches(selector, as_int) is False  # 1 == true is false in CEL
    assert cache.misses == 2


def test_a_selector_that_reads_a_whole_domain_keys_on_the_whole_device() -> None:
    selector = compile_selector('"uuid" in device.attributes["gpu.nvidia.com"]')
    assert selector.fields is None
    cache = SelectorCache()
    devices = [DeviceView.from_node_device(d) for d in fleet()[:16]]
    assert all(match_devices(selector, devices, cache))
    assert cache.misses == 16  # every uuid differs, and the selector can see it


def test_a_cached_runtime_error_is_raised_again_naming_each_device() -> None:
    predicate = device_predicate('device.attributes["gpu.nvidia.com"].model > 1')
    first, second = fleet()[0], fleet()[3]
    for device in (first, second):
        with pytest.raises(CelEvaluationError) as caught:
            predicate(device)
        assert caught.value.device == device["name"]


def test_the_cache_starts_over_when_full() -> None:
    selector = compile_selector('device.attributes["gpu.nvidia.com"].uuid.endsWith("-0")')
    cache = SelectorCache(max_entries=5)
    views = [DeviceView.from_node_device(d) for d in fleet()[:40]]
    assert sum(match_devices(selector, views, cache)) == 5
    assert len(cache) <= 5


def test_raw_devices_spelled_short_or_qualified_get_the_same_answers() -> None:
    predicate = device_predicate('device.attributes["gpu.nvidia.com"].model == "A100"')
    short = entry("a", "A100", "1")
    qualified = {**short, "attributes": {"gpu.nvidia.com/model": {"string": "A100"}}}
    other_domain = {**short, "attributes": {"example.com/model": {"string": "A100"}}}
    assert [predicate(d) for d in (short, qualified, other_domain)] == [True, True, False]


def test_a_malformed_raw_device_is_reported_not_cached() -> None:
    predicate = device_predicate('device.attributes["gpu.nvidia.com"].model == "A100"')
    broken = {**entry("a", "A100", "1"), "attributes": {"model": {"string": ["A100"]}}}
    for _ in range(2):
        with pytest.raises(DeviceViewError, match=r"device\.attributes\.model\.string"):
            predicate(broken)
