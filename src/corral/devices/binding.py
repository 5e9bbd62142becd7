"""Binding: an allocated ResourceClaim becomes a runtime process's environment and options.

Last step of serving on devices (DESIGN.md §6). Once the claim controller has written
``status.allocation`` (node, and per result the driver, pool and device), the Endpoint
controller asks here how the replica's process should see those devices on the local node:

- GPUs (any driver whose domain starts with ``gpu.``): ``CUDA_VISIBLE_DEVICES`` lists the
  allocated devices' ``uuid`` attributes (stable across reboots and driver reorders), else
  their ``index``; llama.cpp gets ``n_gpu_layers=-1`` (offload every layer) unless the
  Endpoint set it, since its default runs on the CPU even with a GPU visible;
- CPUs (driver ``cpu.corral.dev``): the thread count is the ``cores`` consumed (for a shared
  CPU device), else the allocated devices' ``cores`` capacity, else one per allocated device:
  llama.cpp's ``n_threads``, ``OMP_NUM_THREADS`` for every runtime; a replica with only CPU
  devices sees no GPU (``CUDA_VISIBLE_DEVICES=""``).

Pure: the Node objects come in as dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from corral.api.quantity import QuantityError, parse_quantity

CPU_DRIVER = "cpu.corral.dev"


class BindingError(ValueError):
    """An allocation that cannot be bound here (wrong node, device gone, no usable id)."""


@dataclass(frozen=True)
class Binding:
    """What a replica's process gets: environment variables and runtime options to add."""

    env: dict[str, str] = field(default_factory=dict)
    options: dict[str, str | int] = field(default_factory=dict)
    devices: tuple[str, ...] = ()


def bind_allocation(
    allocation: Mapping[str, Any],
    nodes: Mapping[str, Mapping[str, Any]],
    runtime: str,
    options: Mapping[str, object],
    *,
    local_node: str | None = None,
) -> Binding:
    """The binding of ``allocation`` (a claim's ``status.allocation``) for a ``runtime`` replica.

    ``nodes`` maps Node name to Node object. ``local_node``, when given, is the only node whose
    devices this process can hand to a child.
    """
    node_name = str(allocation.get("nodeName") or "")
    if local_node is not None and node_name != local_node:
        raise BindingError(
            f"allocated on node {node_name!r}; this process runs replicas on {local_node!r}"
        )
    results = ((allocation.get("devices") or {}).get("results")) or []
    gpu_ids: list[str] = []
    threads = Fraction(0)
    cpu_seen = False
    names: list[str] = []
    for result in results:
        pool = str(result.get("pool") or node_name)
        device = _device(nodes, pool, str(result.get("device") or ""))
        driver = str(result.get("driver") or device.get("driver") or "")
        names.append(f"{pool}/{device.get('name')}")
        if driver == CPU_DRIVER:
            cpu_seen = True
            threads += _cores(result, device)
        elif driver.startswith("gpu."):
            gpu_ids.append(_gpu_id(device, driver, pool))
    env: dict[str, str] = {}
    bound_options: dict[str, str | int] = {}
    if gpu_ids:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
        if runtime == "llamacpp" and not _has(options, "n_gpu_layers"):
            bound_options["n_gpu_layers"] = -1
    elif cpu_seen:
        env["CUDA_VISIBLE_DEVICES"] = ""
    if cpu_seen:
        count = max(1, int(threads))  # a share below one core still runs one thread
        env["OMP_NUM_THREADS"] = str(count)
        if runtime == "llamacpp" and not _has(options, "n_threads"):
            bound_options["n_threads"] = count
    return Binding(env=env, options=bound_options, devices=tuple(names))


def _device(nodes: Mapping[str, Mapping[str, Any]], pool: str, name: str) -> Mapping[str, Any]:
    node = nodes.get(pool)
    if node is None:
        raise BindingError(f"Node {pool!r} of the allocation does not exist")
    for device in (node.get("spec") or {}).get("devices") or []:
        if device.get("name") == name:
            return dict(device)
    raise BindingError(f"device {name!r} is no longer on Node {pool!r}")


def _attribute(device: Mapping[str, Any], driver: str, name: str) -> object:
    attributes = device.get("attributes") or {}
    raw = attributes.get(name, attributes.get(f"{driver}/{name}"))
    if isinstance(raw, Mapping):
        for kind in ("string", "int", "version", "bool"):
            if kind in raw:
                return raw[kind]
        return None
    return raw


def _gpu_id(device: Mapping[str, Any], driver: str, pool: str) -> str:
    for name in ("uuid", "index"):
        value = _attribute(device, driver, name)
        if value is not None and not isinstance(value, bool) and str(value) != "":
            return str(value)
    raise BindingError(
        f"device {pool}/{device.get('name')} has neither a uuid nor an index attribute"
    )


def _cores(result: Mapping[str, Any], device: Mapping[str, Any]) -> Fraction:
    for raw in (
        (result.get("consumedCapacity") or {}).get("cores"),
        (device.get("capacity") or {}).get("cores"),
    ):
        value = raw.get("value") if isinstance(raw, Mapping) else raw
        if isinstance(value, str | int) and not isinstance(value, bool):
            try:
                return parse_quantity(value)
            except QuantityError:
                continue
    return Fraction(1)


def _has(options: Mapping[str, object], name: str) -> bool:
    return name in options or name.replace("_", "-") in options
