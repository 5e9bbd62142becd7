"""KV cache and memory estimates from header facts, for the scheduler."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest

from corral.models import (
    OVERHEAD_FIXED_BYTES,
    OVERHEAD_WEIGHT_FRACTION,
    kv_cache_bytes,
    memory_estimate,
    read_gguf_metadata,
)

if TYPE_CHECKING:
    from conftest import QuickstartModel

# SmolLM2-135M as its model card and GGUF header describe it.
LAYERS, KV_HEADS, EMBEDDING, HEADS = 30, 3, 576, 9


@pytest.mark.parametrize(("context", "concurrency"), [(8192, 1), (2048, 4), (1, 1)])
def test_kv_cache_of_the_quickstart_model(
    smollm2: QuickstartModel, context: int, concurrency: int
) -> None:
    info = read_gguf_metadata(smollm2.path)
    head_dim = EMBEDDING // HEADS
    f16 = 2

    expected = 2 * LAYERS * KV_HEADS * head_dim * f16 * context * concurrency

    assert kv_cache_bytes(info, context, concurrency) == expected


def test_kv_cache_scales_with_bytes_per_element(smollm2: QuickstartModel) -> None:
    info = read_gguf_metadata(smollm2.path)

    assert kv_cache_bytes(info, 4096, 2, bytes_per_element=4) == 2 * kv_cache_bytes(info, 4096, 2)


def test_different_key_and_value_widths_are_summed(smollm2: QuickstartModel) -> None:
    info = dataclasses.replace(read_gguf_metadata(smollm2.path), head_dim=192, value_head_dim=128)

    assert kv_cache_bytes(info, 100, 1) == LAYERS * KV_HEADS * (192 + 128) * 2 * 100


def test_memory_estimate_is_weights_plus_kv_plus_documented_overhead(
    smollm2: QuickstartModel,
) -> None:
    info = read_gguf_metadata(smollm2.path)
    size = smollm2.path.stat().st_size

    estimate = memory_estimate(info, 8192, 4)

    assert estimate.weights == size
    assert estimate.kv_cache == kv_cache_bytes(info, 8192, 4)
    assert estimate.overhead == OVERHEAD_FIXED_BYTES + int(size * OVERHEAD_WEIGHT_FRACTION)
    assert estimate.total == estimate.weights + estimate.kv_cache + estimate.overhead
    assert estimate.to_dict()["totalBytes"] == estimate.total


@pytest.mark.parametrize(
    ("context", "concurrency", "bytes_per_element", "name"),
    [(0, 1, 2, "context"), (1, 0, 2, "concurrency"), (1, 1, 0, "bytes_per_element")],
)
def test_non_positive_inputs_are_refused(
    smollm2: QuickstartModel, context: int, concurrency: int, bytes_per_element: int, name: str
) -> None:
    info = read_gguf_metadata(smollm2.path)

    with pytest.raises(ValueError, match=f"{name} must be at least 1"):
        kv_cache_bytes(info, context, concurrency, bytes_per_element)


def test_model_without_attention_facts_cannot_be_sized(smollm2: QuickstartModel) -> None:
    info = dataclasses.replace(read_gguf_metadata(smollm2.path), kv_heads=None, block_count=None)

    with pytest.raises(ValueError, match="does not give block_count, kv_heads"):
        memory_estimate(info, 1024, 1)
