"""What a GGUF file says about the model inside: architecture, shape, quantization, size.

Third step of the Model check (:func:`corral.models.inspect_model`): the header facts go into
the Model's status, and the scheduler sizes memory from them (:mod:`corral.models.sizing`).
Only the header is read (:mod:`corral.models.gguf_header`), so this costs milliseconds
whatever the model's size.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from gguf.constants import GGMLQuantizationType, LlamaFileType

from corral.models.errors import ArtifactUnreadable
from corral.models.gguf_header import ArrayField, FieldValue, GGUFHeader, read_header


@dataclass(frozen=True)
class GGUFInfo:
    """Header facts of one GGUF file; ``None`` where the file does not say.

    ``head_dim`` is ``{arch}.attention.key_length`` when given, else embedding ÷ heads (what
    llama.cpp assumes); ``value_head_dim`` likewise from ``value_length``. Where a model
    varies a head count per layer, the largest is kept, so sizing never under-counts.
    ``parameter_count`` is the sum of the tensors' element counts.
    """

    architecture: str
    name: str | None
    size_label: str | None
    parameter_count: int
    context_length: int | None
    block_count: int | None
    attention_heads: int | None
    kv_heads: int | None
    embedding_length: int | None
    head_dim: int | None
    value_head_dim: int | None
    vocab_size: int | None
    file_type: int | None
    quantization: str
    tensor_count: int
    file_size: int
    gguf_version: int
    has_chat_template: bool

    def to_dict(self) -> dict[str, object]:
        """camelCase keys for ``Model.status.metadata``; unknown facts are left out."""
        values: dict[str, object] = {
            "format": "gguf",
            "architecture": self.architecture,
            "name": self.name,
            "sizeLabel": self.size_label,
            "parameterCount": self.parameter_count,
            "contextLength": self.context_length,
            "blockCount": self.block_count,
            "attentionHeads": self.attention_heads,
            "kvHeads": self.kv_heads,
            "embeddingLength": self.embedding_length,
            "headDim": self.head_dim,
            "valueHeadDim": self.value_head_dim,
            "vocabSize": self.vocab_size,
            "fileType": self.file_type,
            "quantization": self.quantization,
            "tensorCount": self.tensor_count,
            "fileSize": self.file_size,
            "ggufVersion": self.gguf_version,
            "hasChatTemplate": self.has_chat_template,
        }
        return {key: value for key, value in values.items() if value is not None}


def read_gguf_metadata(path: Path | str) -> GGUFInfo:
    """Read the header of a GGUF file; raises ``NotGGUF`` or ``ArtifactUnreadable``."""
    file = Path(path)
    header = read_header(file)
    fields = _Fields(header, file)
    architecture = fields.string("general.architecture")
    if not architecture:
        raise ArtifactUnreadable(
            f"{file}: the GGUF header has no general.architecture, so no runtime can load it"
        )
    arch = architecture
    heads = fields.count(f"{arch}.attention.head_count")
    embedding = fields.count(f"{arch}.embedding_length")
    derived_head_dim = embedding // heads if embedding and heads else None
    head_dim = fields.count(f"{arch}.attention.key_length") or derived_head_dim
    tokens = header.fields.get("tokenizer.ggml.tokens")
    file_type = fields.count("general.file_type")
    return GGUFInfo(
        architecture=architecture,
        name=fields.string("general.name"),
        size_label=fields.string("general.size_label"),
        parameter_count=sum(tensor.n_elements for tensor in header.tensors),
        context_length=fields.count(f"{arch}.context_length"),
        block_count=fields.count(f"{arch}.block_count"),
        attention_heads=heads,
        # llama.cpp's default when a model states no KV head count: one per query head.
        kv_heads=fields.count(f"{arch}.attention.head_count_kv") or heads,
        embedding_length=embedding,
        head_dim=head_dim,
        value_head_dim=fields.count(f"{arch}.attention.value_length") or head_dim,
        vocab_size=fields.count(f"{arch}.vocab_size")
        or (tokens.length if isinstance(tokens, ArrayField) else None),
        file_type=file_type,
        quantization=_quantization(file_type, header),
        tensor_count=len(header.tensors),
        file_size=header.file_size,
        gguf_version=header.version,
        has_chat_template="tokenizer.chat_template" in header.fields,
    )


class _Fields:
    """Typed access to header values; a value of the wrong type is an error, not a guess."""

    def __init__(self, header: GGUFHeader, path: Path) -> None:
        self._fields = header.fields
        self._path = path

    def string(self, key: str) -> str | None:
        value = self._fields.get(key)
        if value is None or isinstance(value, str):
            return value
        raise self._wrong_type(key, value, "a string")

    def count(self, key: str) -> int | None:
        value = self._fields.get(key)
        if isinstance(value, ArrayField) and value.values:
            counts = [self._count(key, item) for item in value.values]
            return max(counts)
        if value is None:
            return None
        return self._count(key, value)

    def _count(self, key: str, value: FieldValue) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise self._wrong_type(key, value, "a non-negative integer")

    def _wrong_type(self, key: str, value: FieldValue, wanted: str) -> ArtifactUnreadable:
        found = (
            f"an array of {value.length} {value.element_type.name} values"
            if isinstance(value, ArrayField)
            else repr(value)
        )
        return ArtifactUnreadable(f"{self._path}: GGUF key {key} is {found}, expected {wanted}")


def _quantization(file_type: int | None, header: GGUFHeader) -> str:
    """llama.cpp's name for the file type (``Q4_K_M``), else the dominant matrix tensor type."""
    if file_type is not None:
        try:
            name = LlamaFileType(file_type).name
        except ValueError:
            return f"unknown file type {file_type}"
        return name.removeprefix("MOSTLY_").removeprefix("ALL_")
    # Files without general.file_type: name what most of the weight bytes are, ignoring 1-D
    # tensors (norms stay F32 in every quantization).
    bytes_by_type: Counter[GGMLQuantizationType] = Counter()
    for tensor in header.tensors:
        if len(tensor.shape) >= 2:
            bytes_by_type[tensor.ggml_type] += tensor.n_bytes
    if not bytes_by_type:
        return "unknown"
    return bytes_by_type.most_common(1)[0][0].name
