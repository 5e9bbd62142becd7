"""Sizing from a Model's stored status: ``status.metadata`` back into :class:`GGUFInfo`.

The Model controller writes the GGUF header facts into ``Model.status.metadata``
(:meth:`GGUFInfo.to_dict`); the Endpoint controller and ``corral render kubernetes`` size
replicas from that stored copy rather than re-reading a file that may live on another machine.
"""

from __future__ import annotations

from collections.abc import Mapping

from corral.models.metadata import GGUFInfo
from corral.models.sizing import MemoryEstimate, memory_estimate


def info_from_status(metadata: Mapping[str, object]) -> GGUFInfo | None:
    """The header facts in ``metadata``, or None when it does not describe a GGUF file."""
    if metadata.get("format") != "gguf":
        return None

    def integer(key: str) -> int | None:
        value = metadata.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def text(key: str) -> str | None:
        value = metadata.get(key)
        return value if isinstance(value, str) else None

    return GGUFInfo(
        architecture=text("architecture") or "",
        name=text("name"),
        size_label=text("sizeLabel"),
        parameter_count=integer("parameterCount") or 0,
        context_length=integer("contextLength"),
        block_count=integer("blockCount"),
        attention_heads=integer("attentionHeads"),
        kv_heads=integer("kvHeads"),
        embedding_length=integer("embeddingLength"),
        head_dim=integer("headDim"),
        value_head_dim=integer("valueHeadDim"),
        vocab_size=integer("vocabSize"),
        file_type=integer("fileType"),
        quantization=text("quantization") or "",
        tensor_count=integer("tensorCount") or 0,
        file_size=integer("fileSize") or 0,
        gguf_version=integer("ggufVersion") or 0,
        has_chat_template=metadata.get("hasChatTemplate") is True,
    )


def runtime_shape(
    runtime: str, options: Mapping[str, object], context_length: int | None
) -> tuple[int, int, int]:
    """(context tokens per sequence, sequences at once, KV bytes per element) of a runtime.

    llama.cpp: ``n_ctx`` (llama-cpp-python's server defaults to 2048; 0 means the model's
    trained length), ``n_parallel``/``parallel`` sequences (default 1), ``type_k`` q8_0/q4_0
    caches at about 1 byte per element, f16 at 2. vLLM: ``max_model_len`` (default the model's
    length) × ``max_num_seqs`` is what it may hold at worst, so that is what is asked.
    """

    def number(*names: str, default: int) -> int:
        for name in names:
            for spelling in (name, name.replace("_", "-")):
                if spelling in options:
                    value = options[spelling]
                    if isinstance(value, bool) or not isinstance(value, int | str):
                        raise ValueError(f"runtime.options.{spelling}: expected an integer")
                    try:
                        return int(value)
                    except ValueError:
                        raise ValueError(
                            f"runtime.options.{spelling}: {value!r} is not an integer"
                        ) from None
        return default

    if runtime == "vllm":
        context = number("max_model_len", default=context_length or 0)
        sequences = number("max_num_seqs", default=1)
    else:
        context = number("n_ctx", default=2048)
        sequences = number("n_parallel", "parallel", default=1)
    if context == 0:
        context = context_length or 0
    if context < 1:
        raise ValueError("the context length is unknown: set runtime.options n_ctx/max_model_len")
    if sequences < 1:
        raise ValueError(f"runtime.options: parallel sequences must be at least 1, got {sequences}")
    cache_type = str(options.get("type_k", options.get("type-k", "f16"))).lower()
    bytes_per_element = 1 if cache_type.startswith(("q8", "q4", "q5", "iq")) else 2
    return context, sequences, bytes_per_element


def estimate_from_status(
    metadata: Mapping[str, object], context: int, concurrency: int, bytes_per_element: int = 2
) -> MemoryEstimate | None:
    """Weights + KV cache + overhead of the Model described by ``metadata`` (None: not GGUF).

    Raises ``ValueError`` when the header lacks a fact the KV cache needs.
    """
    info = info_from_status(metadata)
    if info is None:
        return None
    return memory_estimate(info, context, concurrency, bytes_per_element=bytes_per_element)


def replica_estimate(
    metadata: Mapping[str, object], runtime: str, options: Mapping[str, object]
) -> MemoryEstimate | None:
    """One replica of ``runtime`` with ``options`` serving the Model ``metadata`` describes.

    None when the Model is not GGUF; ``ValueError`` naming what is missing or malformed.
    """
    context_length = metadata.get("contextLength")
    context, sequences, element = runtime_shape(
        runtime, options, context_length if isinstance(context_length, int) else None
    )
    return estimate_from_status(metadata, context, sequences, element)
