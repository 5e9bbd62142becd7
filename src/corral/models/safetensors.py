"""What a safetensors file says about its tensors, for Models with ``format: safetensors``.

The counterpart of :mod:`corral.models.metadata` for the other format a Model may declare.
The layout is an 8-byte little-endian header length, a JSON header naming each tensor's
dtype, shape and byte range, then the data; only the header is read. Architecture facts
(layers, heads) live in a separate config.json for this format, so there is nothing to size a
KV cache from here.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.models.errors import ArtifactUnreadable, NotSafetensors, SourceNotFound

_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the limit the safetensors library itself enforces
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip


@dataclass(frozen=True)
class SafetensorsInfo:
    parameter_count: int
    tensor_count: int
    dtype: str  # the dtype holding most of the bytes
    file_size: int

    def to_dict(self) -> dict[str, object]:
        return {
            "format": "safetensors",
            "parameterCount": self.parameter_count,
            "tensorCount": self.tensor_count,
            "dtype": self.dtype,
            "fileSize": self.file_size,
        }


def read_safetensors_metadata(path: Path | str) -> SafetensorsInfo:
    """Read a safetensors header; raises ``NotSafetensors`` or ``ArtifactUnreadable``."""
    file = Path(path)
    try:
        with open(file, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            prefix = stream.read(8)
            header_length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
            if not 2 <= header_length <= min(_MAX_HEADER_BYTES, size - 8):
                raise NotSafetensors(_not_safetensors(file, prefix))
            header_bytes = stream.read(header_length)
    except FileNotFoundError as error:
        raise SourceNotFound(f"{file}: no such file") from error
    except IsADirectoryError as error:
        raise ArtifactUnreadable(f"{file}: is a directory, not a model file") from error
    except OSError as error:
        raise ArtifactUnreadable(f"{file}: cannot read: {error.strerror or error}") from error
    if not header_bytes.startswith(b"{"):
        raise NotSafetensors(_not_safetensors(file, prefix))
    try:
        header = json.loads(header_bytes)
    except ValueError as error:
        raise ArtifactUnreadable(f"{file}: corrupt safetensors header: {error}") from None
    if not isinstance(header, dict):
        raise ArtifactUnreadable(f"{file}: corrupt safetensors header: not a JSON object")
    return _info(file, header, data_size=size - 8 - header_length, file_size=size)


def _not_safetensors(file: Path, prefix: bytes) -> str:
    hint = "; it is a GGUF file, so set format: gguf" if prefix.startswith(b"GGUF") else ""
    return (
        f"{file}: not a safetensors file (its first bytes {prefix!r} are not the length of a "
        f"JSON header){hint}"
    )


def _info(file: Path, header: dict[str, Any], *, data_size: int, file_size: int) -> SafetensorsInfo:
    parameters = 0
    bytes_by_dtype: Counter[str] = Counter()
    tensors = {name: entry for name, entry in header.items() if name != "__metadata__"}
    for name, entry in tensors.items():
        dtype, shape, begin, end = _tensor_entry(file, name, entry)
        if end > data_size:
            raise ArtifactUnreadable(
                f"{file}: truncated safetensors file: tensor {name!r} ends at data byte {end} "
                f"but only {data_size} data bytes are present (an interrupted download or copy?)"
            )
        elements = math.prod(shape)
        if end - begin != elements * _DTYPE_BYTES[dtype]:
            raise ArtifactUnreadable(
                f"{file}: corrupt safetensors header: tensor {name!r} spans {end - begin} bytes, "
                f"but {dtype} {list(shape)} needs {elements * _DTYPE_BYTES[dtype]}"
            )
        parameters += elements
        bytes_by_dtype[dtype] += end - begin
    dominant = bytes_by_dtype.most_common(1)[0][0] if bytes_by_dtype else "none"
    return SafetensorsInfo(
        parameter_count=parameters,
        tensor_count=len(tensors),
        dtype=dominant,
        file_size=file_size,
    )


def _tensor_entry(file: Path, name: str, entry: Any) -> tuple[str, tuple[int, ...], int, int]:
    problem = f"{file}: corrupt safetensors header: tensor {name!r}"
    if not isinstance(entry, dict):
        raise ArtifactUnreadable(f"{problem} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in _DTYPE_BYTES:
        raise ArtifactUnreadable(f"{problem} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise ArtifactUnreadable(f"{problem} has shape {shape!r}, not a list of sizes")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(_is_count(o) for o in offsets)
        and offsets[0] <= offsets[1]
    ):
        raise ArtifactUnreadable(f"{problem} has data_offsets {offsets!r}, not [begin, end]")
    return str(dtype), tuple(shape), offsets[0], offsets[1]


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
