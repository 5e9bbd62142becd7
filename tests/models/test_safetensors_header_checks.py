"""read_safetensors_metadata: header facts, and typed errors for wrong, short or corrupt files."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from corral.models import ArtifactUnreadable, NotSafetensors, read_safetensors_metadata


def _write(path: Path, header: dict[str, Any], data_bytes: int) -> Path:
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + bytes(data_bytes))
    return path


def test_header_facts(tmp_path: Path) -> None:
    header = {
        "a": {"dtype": "F16", "shape": [16, 16], "data_offsets": [0, 512]},
        "b": {"dtype": "F32", "shape": [16], "data_offsets": [512, 576]},
    }

    info = read_safetensors_metadata(_write(tmp_path / "m.safetensors", header, 576))

    assert info.parameter_count == 16 * 16 + 16
    assert info.tensor_count == 2
    assert info.dtype == "F16"


def test_text_file_is_not_safetensors(tmp_path: Path) -> None:
    model = tmp_path / "m.safetensors"
    model.write_text("hello, this is not a model")

    with pytest.raises(NotSafetensors, match="not a safetensors file"):
        read_safetensors_metadata(model)


def test_missing_data_is_truncation(tmp_path: Path) -> None:
    header = {"a": {"dtype": "F32", "shape": [100], "data_offsets": [0, 400]}}

    with pytest.raises(ArtifactUnreadable, match="truncated safetensors file: tensor 'a'"):
        read_safetensors_metadata(_write(tmp_path / "m.safetensors", header, 100))


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}, "spans 8 bytes"),
        ({"dtype": "Q9", "shape": [4], "data_offsets": [0, 16]}, "unknown dtype 'Q9'"),
        ({"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}, "not a list of sizes"),
        ({"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}, "not \\[begin, end\\]"),
        ("F32", "is not an object"),
    ],
)
def test_inconsistent_tensor_entries_are_corrupt(tmp_path: Path, entry: Any, problem: str) -> None:
    with pytest.raises(ArtifactUnreadable, match=problem):
        read_safetensors_metadata(_write(tmp_path / "m.safetensors", {"a": entry}, 16))


def test_header_that_is_not_json_is_corrupt(tmp_path: Path) -> None:
    model = tmp_path / "m.safetensors"
    model.write_bytes(struct.pack("<Q", 5) + b"{oops")

    with pytest.raises(ArtifactUnreadable, match="corrupt safetensors header"):
        read_safetensors_metadata(model)
