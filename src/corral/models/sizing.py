"""How much memory serving a model takes: weights + KV cache + runtime overhead.

Used by the scheduler to decide whether an Endpoint's replicas fit a device (DESIGN.md §6),
from the header facts in :class:`corral.models.GGUFInfo`. The numbers err high on purpose:
refusing a placement is cheap, a runtime that runs out of memory mid-request is not.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.models.metadata import GGUFInfo

OVERHEAD_FIXED_BYTES = 256 * 1024 * 1024
"""Backend context (CUDA, Metal or CPU), logits buffer and compute-graph scratch for one batch."""

OVERHEAD_WEIGHT_FRACTION = 0.05
"""Per-layer scratch and allocator padding, which grow with the model."""


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead

    def to_dict(self) -> dict[str, int]:
        return {
            "weightsBytes": self.weights,
            "kvCacheBytes": self.kv_cache,
            "overheadBytes": self.overhead,
            "totalBytes": self.total,
        }


def kv_cache_bytes(
    info: GGUFInfo, context: int, concurrency: int, bytes_per_element: int = 2
) -> int:
    """Bytes of KV cache for ``concurrency`` sequences of ``context`` tokens each.

    2 (K and V) × layers × kv_heads × head_dim × bytes_per_element × context × concurrency,
    with K and V widths taken separately where a model gives them different sizes.
    ``bytes_per_element`` is 2 for llama.cpp's default f16 cache (about 1 for q8_0).
    """
    for name, value in (
        ("context", context),
        ("concurrency", concurrency),
        ("bytes_per_element", bytes_per_element),
    ):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    layers, kv_heads = info.block_count, info.kv_heads
    key_width, value_width = info.head_dim, info.value_head_dim
    if not (layers and kv_heads and key_width and value_width):
        missing = [
            name
            for name, value in (
                ("block_count", layers),
                ("kv_heads", kv_heads),
                ("head_dim", key_width),
                ("value_head_dim", value_width),
            )
            if not value
        ]
        raise ValueError(
            f"cannot size the KV cache of {info.name or info.architecture!r}: its GGUF header "
            f"does not give {', '.join(missing)}"
        )
    per_token_per_layer = kv_heads * (key_width + value_width)
    return layers * per_token_per_layer * bytes_per_element * context * concurrency


def memory_estimate(
    info: GGUFInfo, context: int, concurrency: int, *, bytes_per_element: int = 2
) -> MemoryEstimate:
    """Weights (the file, which llama.cpp maps whole) + KV cache + documented overhead."""
    return MemoryEstimate(
        weights=info.file_size,
        kv_cache=kv_cache_bytes(info, context, concurrency, bytes_per_element),
        overhead=OVERHEAD_FIXED_BYTES + int(info.file_size * OVERHEAD_WEIGHT_FRACTION),
    )
