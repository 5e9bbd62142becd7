"""A streaming reader for the GGUF header: key/values and tensor infos, never tensor data.

Sits under :func:`corral.models.read_gguf_metadata`. gguf's own ``GGUFReader`` memory-maps
the file and builds a numpy view for every value, tokenizer strings included (about 100,000
views for SmolLM2, over two seconds on this machine), and the map stays open for as long as
any view lives. This reader walks the same layout (gguf's spec, versions 2 and 3, either byte
order) through one 64 KiB buffer, skips what it does not keep, checks every length against
the file size before trusting it, and closes the file before returning. The constants (value
types, tensor types and their block sizes) still come from the ``gguf`` package.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gguf.constants import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGMLQuantizationType,
    GGUFValueType,
)

from corral.models.errors import ArtifactUnreadable, NotGGUF, SourceNotFound

_MAGIC = b"GGUF"
_MAX_DIMS = 4  # GGML_MAX_DIMS
_MAX_NAME_BYTES = 1 << 16
_MAX_KEPT_STRING_BYTES = 1 << 20
_MAX_KEPT_ARRAY_LENGTH = 1024
_READ_SIZE = 1 << 16
_SMALLEST_KV_BYTES = 8 + 4 + 1  # empty key, type, one-byte value
_SMALLEST_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # empty name, no dims, type, offset
_SCALAR_FORMATS = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
}

Scalar = int | float | bool | str


@dataclass(frozen=True)
class ArrayField:
    """An array; ``values`` is kept for short arrays (per-layer settings), not vocabularies."""

    element_type: GGUFValueType
    length: int
    values: tuple[Scalar | None, ...] | None


FieldValue = Scalar | ArrayField | None
"""None stands for a string too long to keep (a multi-megabyte chat template, say)."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLQuantizationType
    offset: int  # from the start of the data section
    n_elements: int
    n_bytes: int


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    big_endian: bool
    fields: dict[str, FieldValue]
    tensors: tuple[TensorInfo, ...]
    alignment: int
    data_offset: int
    file_size: int


class _Truncated(Exception):
    """The file ends before the header or a tensor's data does."""


class _Corrupt(Exception):
    """The header is self-contradictory (bad type id, impossible count, duplicate name)."""


def read_header(path: Path) -> GGUFHeader:
    """Parse the GGUF header of ``path``; raises ``NotGGUF`` or ``ArtifactUnreadable``."""
    try:
        with open(path, "rb", buffering=0) as file:
            size = os.fstat(file.fileno()).st_size
            return _parse(_Cursor(file, size), path)
    except _Truncated as error:
        raise ArtifactUnreadable(
            f"{path}: truncated GGUF file: {error}; the file is incomplete "
            "(an interrupted download or copy?)"
        ) from None
    except _Corrupt as error:
        raise ArtifactUnreadable(f"{path}: corrupt GGUF header: {error}") from None
    except FileNotFoundError as error:
        raise SourceNotFound(f"{path}: no such file") from error
    except IsADirectoryError as error:
        raise ArtifactUnreadable(f"{path}: is a directory, not a model file") from error
    except OSError as error:
        raise ArtifactUnreadable(f"{path}: cannot read: {error.strerror or error}") from error


class _Cursor:
    """Sequential reads over a file through one buffer; every read is checked against the size."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self.size = size
        self._buffer = b""
        self._start = 0  # file offset of self._buffer[0]
        self._pos = 0
        self.order = "<"

    @property
    def offset(self) -> int:
        return self._start + self._pos

    def take(self, count: int, what: str) -> bytes:
        if self._pos + count > len(self._buffer):
            self._fill(count, what)
        data = self._buffer[self._pos : self._pos + count]
        self._pos += count
        return data

    def unpack(self, fmt: str, what: str) -> tuple[int | float | bool, ...]:
        layout = struct.Struct(self.order + fmt)
        return layout.unpack(self.take(layout.size, what))

    def uint(self, fmt: str, what: str) -> int:
        (value,) = self.unpack(fmt, what)
        return int(value)

    def skip(self, count: int, what: str) -> None:
        if self.offset + count > self.size:
            raise _Truncated(f"{what} at byte {self.offset} needs {count} bytes, past the end")
        if self._pos + count <= len(self._buffer):
            self._pos += count
            return
        self._start, self._buffer, self._pos = self.offset + count, b"", 0

    def skip_strings(self, count: int, what: str) -> None:
        """Skip ``count`` length-prefixed strings; the vocabulary is most of a header."""
        length_of = struct.Struct(self.order + "Q").unpack_from
        remaining = count
        while remaining:
            buffer, pos = self._buffer, self._pos
            end = len(buffer)
            while remaining and pos + 8 <= end:
                following = pos + 8 + length_of(buffer, pos)[0]
                if following > end:
                    break
                pos, remaining = following, remaining - 1
            self._pos = pos
            if remaining:
                self.skip(self.uint("Q", what), what)
                remaining -= 1

    def _fill(self, count: int, what: str) -> None:
        if self.offset + count > self.size:
            raise _Truncated(f"{what} at byte {self.offset} needs {count} bytes")
        kept = self._buffer[self._pos :]
        self._file.seek(self.offset + len(kept))
        wanted = max(_READ_SIZE, count - len(kept))
        chunks = [kept]
        while wanted > 0 and (chunk := self._file.read(wanted)):
            chunks.append(chunk)
            wanted -= len(chunk)
        self._start, self._buffer, self._pos = self.offset, b"".join(chunks), 0
        if len(self._buffer) < count:
            raise _Truncated(f"{what} at byte {self.offset}: the file shrank while being read")


def _parse(cursor: _Cursor, path: Path) -> GGUFHeader:
    start = cursor.take(min(cursor.size, len(_MAGIC)), "the magic")
    if start != _MAGIC:
        found = f"it starts with {start!r}" if start else "it is empty"
        raise NotGGUF(f"{path}: not a GGUF file ({found}; GGUF files start with {_MAGIC!r})")
    version = cursor.uint("I", "the version")
    if version & 0xFFFF == 0:  # written on a big-endian machine
        cursor.order = ">"
        version = int.from_bytes(version.to_bytes(4, "little"), "big")
    if version == 1:
        raise _Corrupt("GGUF version 1 (the 2023 draft) is not supported; convert the model again")
    if version not in (2, 3):
        raise _Corrupt(f"unknown GGUF version {version} (this reader knows versions 2 and 3)")
    tensor_count = cursor.uint("Q", "the tensor count")
    kv_count = cursor.uint("Q", "the metadata count")
    if kv_count * _SMALLEST_KV_BYTES + tensor_count * _SMALLEST_TENSOR_INFO_BYTES > cursor.size:
        raise _Corrupt(
            f"it claims {kv_count} metadata entries and {tensor_count} tensors, "
            f"more than fit in {cursor.size} bytes"
        )
    fields: dict[str, FieldValue] = {}
    for _ in range(kv_count):
        key = _name(cursor, "a metadata key")
        if key in fields:
            raise _Corrupt(f"metadata key {key!r} appears twice")
        value_type = _value_type(cursor.uint("I", f"the type of {key!r}"), key)
        fields[key] = _value(cursor, value_type, key, keep=True)
    tensors = _tensor_infos(cursor, tensor_count)
    alignment = _alignment(fields.get("general.alignment"))
    data_offset = -(-cursor.offset // alignment) * alignment
    _check_tensor_data(tensors, alignment, data_offset, cursor.size)
    return GGUFHeader(
        version=version,
        big_endian=cursor.order == ">",
        fields=fields,
        tensors=tensors,
        alignment=alignment,
        data_offset=data_offset,
        file_size=cursor.size,
    )


def _name(cursor: _Cursor, what: str) -> str:
    length = cursor.uint("Q", f"the length of {what}")
    if length > _MAX_NAME_BYTES:
        raise _Corrupt(f"{what} at byte {cursor.offset} claims {length} bytes")
    try:
        return cursor.take(length, what).decode("utf-8")
    except UnicodeDecodeError as error:
        raise _Corrupt(f"{what} at byte {cursor.offset} is not UTF-8") from error


def _value_type(raw: int, key: str) -> GGUFValueType:
    try:
        return GGUFValueType(raw)
    except ValueError:
        raise _Corrupt(f"metadata key {key!r} has unknown value type {raw}") from None


def _value(cursor: _Cursor, value_type: GGUFValueType, key: str, *, keep: bool) -> FieldValue:
    what = f"the value of {key!r}"
    if value_type == GGUFValueType.STRING:
        length = cursor.uint("Q", what)
        if keep and length <= _MAX_KEPT_STRING_BYTES:
            return cursor.take(length, what).decode("utf-8", errors="replace")
        cursor.skip(length, what)
        return None
    if value_type in _SCALAR_FORMATS:
        (scalar,) = cursor.unpack(_SCALAR_FORMATS[value_type], what)
        return scalar
    element_type = _value_type(cursor.uint("I", what), key)
    length = cursor.uint("Q", what)
    keep_values = keep and length <= _MAX_KEPT_ARRAY_LENGTH
    if element_type in _SCALAR_FORMATS:
        element_format = _SCALAR_FORMATS[element_type]
        byte_count = length * struct.calcsize(element_format)
        if not keep_values:
            cursor.skip(byte_count, what)
            return ArrayField(element_type, length, None)
        values = cursor.unpack(f"{length}{element_format}", what)
        return ArrayField(element_type, length, values)
    remaining = cursor.size - cursor.offset
    if length * 8 > remaining:
        raise _Truncated(
            f"{what} at byte {cursor.offset} has {length} elements, more than the {remaining} "
            "bytes left can hold"
        )
    if element_type == GGUFValueType.STRING and not keep_values:
        cursor.skip_strings(length, what)
        return ArrayField(element_type, length, None)
    items = tuple(_value(cursor, element_type, key, keep=keep_values) for _ in range(length))
    kept = tuple(item for item in items if not isinstance(item, ArrayField))
    return ArrayField(element_type, length, kept if len(kept) == length else None)


def _tensor_infos(cursor: _Cursor, count: int) -> tuple[TensorInfo, ...]:
    tensors: list[TensorInfo] = []
    seen: set[str] = set()
    for index in range(count):
        name = _name(cursor, f"the name of tensor #{index}")
        if name in seen:
            raise _Corrupt(f"tensor {name!r} appears twice")
        seen.add(name)
        dims_count = cursor.uint("I", f"the rank of tensor {name!r}")
        if dims_count > _MAX_DIMS:
            raise _Corrupt(f"tensor {name!r} has {dims_count} dimensions (at most {_MAX_DIMS})")
        shape = tuple(int(d) for d in cursor.unpack(f"{dims_count}Q", f"the shape of {name!r}"))
        raw_type = cursor.uint("I", f"the type of tensor {name!r}")
        offset = cursor.uint("Q", f"the offset of tensor {name!r}")
        try:
            ggml_type = GGMLQuantizationType(raw_type)
            block_size, type_size = GGML_QUANT_SIZES[ggml_type]
        except (ValueError, KeyError):
            raise _Corrupt(f"tensor {name!r} has unknown type id {raw_type}") from None
        if shape and shape[0] % block_size:
            raise _Corrupt(
                f"tensor {name!r} row length {shape[0]} is not a multiple of "
                f"{ggml_type.name}'s block size {block_size}"
            )
        n_elements = math.prod(shape)
        tensors.append(
            TensorInfo(
                name=name,
                shape=shape,
                ggml_type=ggml_type,
                offset=offset,
                n_elements=n_elements,
                n_bytes=n_elements // block_size * type_size,
            )
        )
    return tuple(tensors)


def _alignment(value: FieldValue) -> int:
    if value is None:
        return GGUF_DEFAULT_ALIGNMENT
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value & (value - 1):
        raise _Corrupt(f"general.alignment must be a positive power of two, got {value!r}")
    return value


def _check_tensor_data(
    tensors: tuple[TensorInfo, ...], alignment: int, data_offset: int, size: int
) -> None:
    for tensor in tensors:
        if tensor.offset % alignment:
            raise _Corrupt(f"tensor {tensor.name!r} data offset is not {alignment}-byte aligned")
        end = data_offset + tensor.offset + tensor.n_bytes
        if end > size:
            raise _Truncated(
                f"tensor {tensor.name!r} needs bytes up to {end} but the file has {size}"
            )
