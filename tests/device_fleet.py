"""Builders for the device-scheduling tests: Nodes, DeviceClasses, claims, a selector seam.

``compile_selector`` stands in for the CEL engine at the allocator's seam: it knows the few
real CEL expressions these tests use and refuses anything else the way a compile error would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

GPU = "gpu.nvidia.com"
IS_GPU = f'device.driver == "{GPU}"'
IS_H100 = f'device.attributes["{GPU}"].model == "H100"'
BIG_MEMORY = f'device.capacity["{GPU}"].memory.compareTo(quantity("60Gi")) >= 0'


def _attr(device: Mapping[str, Any], name: str) -> object:
    value = (device.get("attributes") or {})[name]
    return next(iter(value.values()))


_KNOWN: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    IS_GPU: lambda d: d.get("driver") == GPU,
    IS_H100: lambda d: _attr(d, "model") == "H100",
    BIG_MEMORY: lambda d: str((d.get("capacity") or {})["memory"]["value"]) in ("80Gi", "141Gi"),
}


def compile_selector(expression: str) -> Callable[[Mapping[str, Any]], bool]:
    try:
        return _KNOWN[expression]
    except KeyError:
        raise ValueError(f"unknown test expression {expression!r}") from None


def gpu_node(
    name: str,
    gpus: int = 8,
    *,
    model: str = "A100",
    memory: str = "80Gi",
    shared: bool = True,
    domains: int = 2,
    ready: bool = True,
    taints: list[dict[str, str]] | None = None,
    unhealthy: tuple[int, ...] = (),
) -> dict[str, Any]:
    devices = [
        {
            "name": f"gpu{i}",
            "driver": GPU,
            "attributes": {
                "model": {"string": model},
                "nvlinkDomain": {"int": i * domains // gpus},
                "uuid": {"string": f"GPU-{name}-{i}"},
            },
            "capacity": {"compute": {"value": "1"}, "memory": {"value": memory}},
            "allowMultipleAllocations": shared,
        }
        for i in range(gpus)
    ]
    spec: dict[str, Any] = {"devices": devices}
    if taints:
        spec["taints"] = taints
    status = {
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "devices": [
            {"name": f"gpu{i}", "health": "Unhealthy" if i in unhealthy else "Healthy"}
            for i in range(gpus)
        ],
    }
    return {"kind": "Node", "metadata": {"name": name}, "spec": spec, "status": status}


def gpu_class(name: str = "gpu", *extra: str) -> dict[str, Any]:
    selectors = [{"cel": {"expression": e}} for e in (IS_GPU, *extra)]
    return {"kind": "DeviceClass", "metadata": {"name": name}, "spec": {"selectors": selectors}}


def claim(
    name: str,
    *,
    count: int = 1,
    share: str | None = None,
    device_class: str = "gpu",
    selectors: tuple[str, ...] = (),
    priority: int = 0,
    queue: str | None = None,
    namespace: str = "default",
    same_domain: bool = False,
    mode: str = "ExactCount",
) -> dict[str, Any]:
    exactly: dict[str, Any] = {"deviceClassName": device_class, "allocationMode": mode}
    if mode == "ExactCount":
        exactly["count"] = count
    if share is not None:
        exactly["capacity"] = {"requests": {"compute": share}}
    if selectors:
        exactly["selectors"] = [{"cel": {"expression": e}} for e in selectors]
    devices: dict[str, Any] = {"requests": [{"name": "gpus", "exactly": exactly}]}
    if same_domain:
        devices["constraints"] = [{"matchAttribute": f"{GPU}/nvlinkDomain"}]
    spec: dict[str, Any] = {"devices": devices, "priority": priority}
    if queue is not None:
        spec["queue"] = queue
    return {
        "kind": "ResourceClaim",
        "metadata": {"namespace": namespace, "name": name},
        "spec": spec,
    }


def quota(
    name: str, nominal: int | str, *, cohort: str = "", borrowing: int | str | None = None
) -> dict[str, Any]:
    line: dict[str, Any] = {"deviceClassName": "gpu", "nominal": nominal}
    if borrowing is not None:
        line["borrowingLimit"] = borrowing
    return {
        "kind": "DeviceQuota",
        "metadata": {"name": name},
        "spec": {"team": name, "cohort": cohort, "quotas": [line]},
    }
