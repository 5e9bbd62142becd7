"""Binding: an allocated claim becomes the replica process's environment and options.

GPUs become ``CUDA_VISIBLE_DEVICES`` (uuid, else index) and llama.cpp offloads every layer;
CPU cores become the thread count; an allocation elsewhere, or of a vanished device, is refused.
"""

from __future__ import annotations

from typing import Any

import pytest

from corral.devices.binding import BindingError, bind_allocation
from device_fleet import GPU, gpu_node


def allocation(node: str, *results: dict[str, Any]) -> dict[str, Any]:
    return {"nodeName": node, "devices": {"results": list(results)}}


def result(device: str, driver: str = GPU, pool: str = "n0", **consumed: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"request": "replica", "driver": driver, "pool": pool, "device": device}
    if consumed:
        entry["consumedCapacity"] = consumed
    return entry


def cpu_node(name: str = "n0", cores: str = "16") -> dict[str, Any]:
    device = {
        "name": "cpu",
        "driver": "cpu.corral.dev",
        "capacity": {"cores": {"value": cores}, "memory": {"value": "64Gi"}},
        "allowMultipleAllocations": True,
    }
    return {"kind": "Node", "metadata": {"name": name}, "spec": {"devices": [device]}}


def test_allocated_gpus_are_the_only_ones_the_process_sees() -> None:
    nodes = {"n0": gpu_node("n0", 4)}
    binding = bind_allocation(
        allocation("n0", result("gpu2"), result("gpu3")), nodes, "llamacpp", {}, local_node="n0"
    )
    assert binding.env == {"CUDA_VISIBLE_DEVICES": "GPU-n0-2,GPU-n0-3"}
    assert binding.options == {"n_gpu_layers": -1}
    assert binding.devices == ("n0/gpu2", "n0/gpu3")
    # The Endpoint's own choice stays; vLLM needs no option to use what it sees.
    own = bind_allocation(allocation("n0", result("gpu0")), nodes, "llamacpp", {"n-gpu-layers": 10})
    assert own.options == {}
    assert bind_allocation(allocation("n0", result("gpu0")), nodes, "vllm", {}).options == {}


def test_a_gpu_without_uuid_is_named_by_index_and_one_with_neither_is_refused() -> None:
    node = gpu_node("n0", 2)
    for i, device in enumerate(node["spec"]["devices"]):
        device["attributes"] = {"index": {"int": i}}
    binding = bind_allocation(allocation("n0", result("gpu1")), {"n0": node}, "vllm", {})
    assert binding.env["CUDA_VISIBLE_DEVICES"] == "1"
    node["spec"]["devices"][1]["attributes"] = {}
    with pytest.raises(BindingError, match="neither a uuid nor an index"):
        bind_allocation(allocation("n0", result("gpu1")), {"n0": node}, "vllm", {})


def test_cpu_cores_become_threads_and_hide_gpus() -> None:
    nodes = {"n0": cpu_node()}
    shared = allocation("n0", result("cpu", "cpu.corral.dev", cores="6"))
    binding = bind_allocation(shared, nodes, "llamacpp", {})
    assert binding.options == {"n_threads": 6}
    assert binding.env == {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "6"}
    whole = bind_allocation(allocation("n0", result("cpu", "cpu.corral.dev")), nodes, "vllm", {})
    assert whole.env["OMP_NUM_THREADS"] == "16"
    assert whole.options == {}
    small = allocation("n0", result("cpu", "cpu.corral.dev", cores="500m"))
    assert bind_allocation(small, nodes, "llamacpp", {"n_threads": 2}).options == {}
    assert bind_allocation(small, nodes, "llamacpp", {}).options == {"n_threads": 1}


def test_an_allocation_elsewhere_or_of_a_vanished_device_is_not_bound() -> None:
    nodes = {"n0": gpu_node("n0", 1)}
    with pytest.raises(BindingError, match=r"allocated on node 'n0'; this process runs .* 'me'"):
        bind_allocation(allocation("n0", result("gpu0")), nodes, "vllm", {}, local_node="me")
    with pytest.raises(BindingError, match="device 'gpu7' is no longer on Node 'n0'"):
        bind_allocation(allocation("n0", result("gpu7")), nodes, "vllm", {})
    with pytest.raises(BindingError, match="Node 'gone'"):
        bind_allocation(allocation("gone", result("gpu0", pool="gone")), nodes, "vllm", {})
