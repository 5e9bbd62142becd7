"""Model artifacts: where a Model's file is, whether it is the pinned one, what is inside.

The library under the Model controller and the scheduler. It imports nothing of corral's
beyond ``corral.api`` and never touches the network:

- :func:`resolve_source` turns ``file://``, ``pkg://`` and ``hf://`` (local cache only) into a path;
- :func:`sha256_file` / :func:`verify_digest` hash it in bounded memory, optionally cached;
- :func:`read_gguf_metadata` reads the GGUF header (architecture, shape, quantization);
- :func:`kv_cache_bytes` / :func:`memory_estimate` size a deployment for the scheduler;
- :func:`inspect_model` does the whole check for one Model spec.

Every failure is an :class:`ArtifactError` whose ``reason`` and message go straight into a
condition.
"""

from corral.models.digests import DEFAULT_CHUNK_SIZE, Progress, sha256_file, verify_digest
from corral.models.errors import (
    ArtifactError,
    ArtifactUnreadable,
    DigestMismatch,
    InvalidSource,
    NotGGUF,
    NotSafetensors,
    SourceNotFound,
    SourceUnavailable,
    UnsupportedFormat,
)
from corral.models.inspection import ArtifactReport, inspect_model
from corral.models.metadata import GGUFInfo, read_gguf_metadata
from corral.models.safetensors import SafetensorsInfo, read_safetensors_metadata
from corral.models.sizing import (
    OVERHEAD_FIXED_BYTES,
    OVERHEAD_WEIGHT_FRACTION,
    MemoryEstimate,
    kv_cache_bytes,
    memory_estimate,
)
from corral.models.sources import resolve_source

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "OVERHEAD_FIXED_BYTES",
    "OVERHEAD_WEIGHT_FRACTION",
    "ArtifactError",
    "ArtifactReport",
    "ArtifactUnreadable",
    "DigestMismatch",
    "GGUFInfo",
    "InvalidSource",
    "MemoryEstimate",
    "NotGGUF",
    "NotSafetensors",
    "Progress",
    "SafetensorsInfo",
    "SourceNotFound",
    "SourceUnavailable",
    "UnsupportedFormat",
    "inspect_model",
    "kv_cache_bytes",
    "memory_estimate",
    "read_gguf_metadata",
    "read_safetensors_metadata",
    "resolve_source",
    "sha256_file",
    "verify_digest",
]
