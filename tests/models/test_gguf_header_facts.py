"""read_gguf_metadata reports what the GGUF header says, reading only the header."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from gguf import GGMLQuantizationType, GGUFEndian, GGUFWriter, LlamaFileType

from corral.models import read_gguf_metadata

if TYPE_CHECKING:
    from conftest import GGUFFactory, QuickstartModel


def test_quickstart_model_header_facts(smollm2: QuickstartModel) -> None:
    info = read_gguf_metadata(smollm2.path)

    assert info.architecture == "llama"
    assert info.block_count == 30
    assert info.attention_heads == 9
    assert info.kv_heads == 3
    assert info.embedding_length == 576
    assert info.context_length == 8192
    assert info.head_dim == 576 // 9
    assert info.value_head_dim == 576 // 9
    assert info.file_type == 3
    assert info.quantization == "Q4_1"
    assert info.file_size == smollm2.path.stat().st_size
    assert info.size_label == "135M"
    assert info.has_chat_template


def test_quickstart_model_parameter_count_matches_its_size_label(
    smollm2: QuickstartModel,
) -> None:
    info = read_gguf_metadata(smollm2.path)

    assert abs(info.parameter_count - 135e6) / 135e6 < 0.02
    assert info.tensor_count > 2 * info.block_count  # at least Q/K/V/O... per block


def test_status_dict_uses_camel_case_and_leaves_out_unknowns(
    write_gguf: GGUFFactory, smollm2: QuickstartModel
) -> None:
    full = read_gguf_metadata(smollm2.path).to_dict()
    sparse = read_gguf_metadata(write_gguf("sparse.gguf")).to_dict()

    assert full["kvHeads"] == 3
    assert full["quantization"] == "Q4_1"
    assert full["format"] == "gguf"
    assert "contextLength" in full
    assert "contextLength" not in sparse
    assert "name" not in sparse


def test_reading_the_header_does_not_read_the_weights(smollm2: QuickstartModel) -> None:
    # /proc/self/io counts every byte this process reads through read() calls.
    before = _bytes_read()
    read_gguf_metadata(smollm2.path)
    read = _bytes_read() - before

    assert read < smollm2.path.stat().st_size / 20


def test_no_file_or_map_is_left_open(smollm2: QuickstartModel) -> None:
    before = _open_descriptors()
    read_gguf_metadata(smollm2.path)
    gc.collect()  # a leaked file would raise ResourceWarning here (warnings are errors)

    assert _open_descriptors() == before
    assert str(smollm2.path) not in Path("/proc/self/maps").read_text()


def test_key_and_value_lengths_override_the_derived_head_dim(write_gguf: GGUFFactory) -> None:
    def configure(writer: GGUFWriter) -> None:
        writer.add_block_count(2)
        writer.add_embedding_length(4096)
        writer.add_head_count(32)
        writer.add_head_count_kv(8)
        writer.add_key_length(192)
        writer.add_value_length(128)

    info = read_gguf_metadata(write_gguf("mla.gguf", configure))

    assert info.head_dim == 192
    assert info.value_head_dim == 128


def test_missing_kv_head_count_means_one_per_query_head(write_gguf: GGUFFactory) -> None:
    def configure(writer: GGUFWriter) -> None:
        writer.add_embedding_length(512)
        writer.add_head_count(8)

    info = read_gguf_metadata(write_gguf("mha.gguf", configure))

    assert info.kv_heads == 8
    assert info.head_dim == 64


def test_per_layer_head_counts_take_the_largest(write_gguf: GGUFFactory) -> None:
    def configure(writer: GGUFWriter) -> None:
        writer.add_block_count(3)
        writer.add_head_count([4, 8, 6])
        writer.add_head_count_kv([1, 2, 2])
        writer.add_embedding_length(256)

    info = read_gguf_metadata(write_gguf("per-layer.gguf", configure))

    assert info.attention_heads == 8
    assert info.kv_heads == 2
    assert info.head_dim == 256 // 8


def test_file_type_names_follow_llama_cpp(write_gguf: GGUFFactory) -> None:
    def configure(writer: GGUFWriter) -> None:
        writer.add_file_type(LlamaFileType.MOSTLY_Q4_K_M)

    info = read_gguf_metadata(write_gguf("q4km.gguf", configure))

    assert info.quantization == "Q4_K_M"


def test_quantization_without_file_type_is_the_dominant_matrix_type(
    write_gguf: GGUFFactory,
) -> None:
    tensors = {
        "token_embd.weight": np.zeros((64, 32), dtype=np.float16),
        "output_norm.weight": np.zeros((4096,), dtype=np.float32),
    }

    info = read_gguf_metadata(write_gguf("f16.gguf", tensors=tensors))

    assert info.file_type is None
    assert info.quantization == GGMLQuantizationType.F16.name
    assert info.parameter_count == 64 * 32 + 4096


def test_vocabulary_size_falls_back_to_the_token_list(write_gguf: GGUFFactory) -> None:
    def configure(writer: GGUFWriter) -> None:
        writer.add_token_list([f"tok{index}" for index in range(3000)])

    info = read_gguf_metadata(write_gguf("vocab.gguf", configure))

    assert info.vocab_size == 3000


def test_big_endian_files_read_the_same(write_gguf: GGUFFactory) -> None:
    def configure(writer: GGUFWriter) -> None:
        writer.add_block_count(30)
        writer.add_head_count(9)
        writer.add_head_count_kv(3)
        writer.add_embedding_length(576)
        writer.add_context_length(8192)
        writer.add_token_list(["a", "b", "c"])

    little = read_gguf_metadata(write_gguf("le.gguf", configure))
    big = read_gguf_metadata(write_gguf("be.gguf", configure, endianess=GGUFEndian.BIG))

    assert big.to_dict() == little.to_dict()
    assert big.kv_heads == 3


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("/proc/self/io has no rchar line")


def _open_descriptors() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))
