"""Files that are not GGUF, cut short or corrupt get a typed error that says what is wrong."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from gguf import GGUFWriter

from corral.models import ArtifactUnreadable, NotGGUF, SourceNotFound, read_gguf_metadata

if TYPE_CHECKING:
    from conftest import GGUFFactory, QuickstartModel


def _header(version: int, tensors: int, kvs: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kvs)


def test_a_text_file_is_not_gguf(tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_text("<html>404 Not Found</html>")

    with pytest.raises(NotGGUF) as caught:
        read_gguf_metadata(model)

    assert "not a GGUF file" in str(caught.value)
    assert "b'<htm'" in str(caught.value)
    assert str(model) in str(caught.value)
    assert caught.value.reason == "NotGGUF"


@pytest.mark.parametrize("content", [b"", b"GG"])
def test_empty_or_tiny_file_is_not_gguf(tmp_path: Path, content: bytes) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(content)

    with pytest.raises(NotGGUF):
        read_gguf_metadata(model)


def test_first_kilobytes_of_a_real_model_are_reported_truncated(
    tmp_path: Path, smollm2: QuickstartModel
) -> None:
    partial = tmp_path / "partial.gguf"
    with open(smollm2.path, "rb") as source:
        partial.write_bytes(source.read(8192))

    with pytest.raises(ArtifactUnreadable) as caught:
        read_gguf_metadata(partial)

    assert "truncated GGUF file" in str(caught.value)
    assert caught.value.reason == "Unreadable"


def test_model_missing_its_last_megabyte_names_the_short_tensor(
    tmp_path: Path, smollm2: QuickstartModel
) -> None:
    size = smollm2.path.stat().st_size
    partial = tmp_path / "partial.gguf"
    with open(smollm2.path, "rb") as source, open(partial, "wb") as out:
        out.write(source.read(4 * 1024 * 1024))  # the whole header, then a sparse hole
        out.truncate(size - 1024 * 1024)

    with pytest.raises(ArtifactUnreadable) as caught:
        read_gguf_metadata(partial)

    message = str(caught.value)
    assert "truncated GGUF file: tensor" in message
    assert f"the file has {size - 1024 * 1024}" in message


def test_version_1_is_refused_by_name(tmp_path: Path) -> None:
    model = tmp_path / "old.gguf"
    model.write_bytes(b"GGUF" + struct.pack("<III", 1, 0, 0))

    with pytest.raises(ArtifactUnreadable, match="version 1"):
        read_gguf_metadata(model)


def test_counts_larger_than_the_file_are_corrupt(tmp_path: Path) -> None:
    model = tmp_path / "lying.gguf"
    model.write_bytes(_header(3, 1 << 40, 1 << 40))

    with pytest.raises(ArtifactUnreadable, match="more than fit"):
        read_gguf_metadata(model)


def test_unknown_value_type_is_corrupt(tmp_path: Path) -> None:
    key = b"general.architecture"
    model = tmp_path / "bad-type.gguf"
    model.write_bytes(_header(3, 0, 1) + struct.pack("<Q", len(key)) + key + struct.pack("<I", 77))

    with pytest.raises(ArtifactUnreadable, match="unknown value type 77"):
        read_gguf_metadata(model)


def test_string_length_beyond_the_end_is_truncation_not_a_huge_read(tmp_path: Path) -> None:
    key = b"general.name"
    model = tmp_path / "long-string.gguf"
    value = struct.pack("<IQ", 8, 1 << 50)  # STRING claiming a petabyte
    model.write_bytes(_header(3, 0, 1) + struct.pack("<Q", len(key)) + key + value)

    with pytest.raises(ArtifactUnreadable, match="truncated"):
        read_gguf_metadata(model)


def test_gguf_without_architecture_cannot_be_served(tmp_path: Path) -> None:
    model = tmp_path / "no-arch.gguf"
    model.write_bytes(_header(3, 0, 0))

    with pytest.raises(ArtifactUnreadable, match=r"no general\.architecture"):
        read_gguf_metadata(model)


def test_wrongly_typed_shape_value_is_reported_with_its_key(write_gguf: GGUFFactory) -> None:
    def configure(writer: GGUFWriter) -> None:
        writer.add_string("llama.block_count", "thirty")

    with pytest.raises(ArtifactUnreadable, match=r"llama\.block_count is 'thirty'"):
        read_gguf_metadata(write_gguf("typed.gguf", configure))


def test_missing_file_is_source_not_found(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound):
        read_gguf_metadata(tmp_path / "absent.gguf")


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ArtifactUnreadable, match="directory"):
        read_gguf_metadata(tmp_path)
