"""inspect_model: the whole check a Model controller runs, with typed failures."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from corral.api.kinds.model import ModelStatus
from corral.models import (
    ArtifactError,
    ArtifactUnreadable,
    DigestMismatch,
    GGUFInfo,
    NotGGUF,
    SourceNotFound,
    UnsupportedFormat,
    inspect_model,
    inspection,
)

if TYPE_CHECKING:
    from conftest import QuickstartModel


def test_quickstart_model_is_verified_and_described(smollm2: QuickstartModel) -> None:
    report = inspect_model(smollm2.source, smollm2.digest, "gguf")

    assert report.verified
    assert report.path == smollm2.path
    assert report.digest == smollm2.digest
    assert report.size == smollm2.path.stat().st_size
    assert report.metadata["architecture"] == "llama"
    assert report.metadata["kvHeads"] == 3


def test_report_fills_the_model_status_schema(smollm2: QuickstartModel) -> None:
    report = inspect_model(smollm2.source, smollm2.digest, "gguf")

    status = ModelStatus.model_validate(report.status_fields())

    assert status.digest == smollm2.digest
    assert status.sizeBytes == smollm2.path.stat().st_size
    assert status.metadata["quantization"] == "Q4_1"
    json.dumps(report.status_fields())  # status is stored as JSON


def test_without_a_pinned_digest_the_digest_is_reported_unverified(
    smollm2: QuickstartModel,
) -> None:
    report = inspect_model(f"file://{smollm2.path}", None, "gguf")

    assert not report.verified
    assert report.digest == smollm2.digest


def test_wrong_pinned_digest_fails(smollm2: QuickstartModel) -> None:
    with pytest.raises(DigestMismatch) as caught:
        inspect_model(smollm2.source, "sha256:" + "0" * 64, "gguf")

    assert caught.value.actual == smollm2.digest


def test_digest_cache_makes_the_second_check_read_nothing(
    smollm2: QuickstartModel, tmp_path: Path
) -> None:
    calls: list[int] = []

    def progress(done: int, _total: int) -> None:
        calls.append(done)

    inspect_model(
        smollm2.source, smollm2.digest, "gguf", digest_cache_dir=tmp_path, progress=progress
    )
    first = len(calls)
    report = inspect_model(
        smollm2.source, smollm2.digest, "gguf", digest_cache_dir=tmp_path, progress=progress
    )

    assert first > 0
    assert calls[-1] == smollm2.path.stat().st_size
    assert len(calls) == first
    assert report.verified


def test_wrong_format_is_reported_before_any_hashing(tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_text("not a model")
    calls: list[int] = []

    with pytest.raises(NotGGUF):
        inspect_model(f"file://{model}", None, "gguf", progress=lambda done, _: calls.append(done))

    assert calls == []


def test_safetensors_model_is_described(tmp_path: Path) -> None:
    header = json.dumps(
        {
            "__metadata__": {"format": "pt"},
            "embed.weight": {"dtype": "BF16", "shape": [4, 8], "data_offsets": [0, 64]},
            "norm.weight": {"dtype": "F32", "shape": [8], "data_offsets": [64, 96]},
        }
    ).encode()
    model = tmp_path / "model.safetensors"
    model.write_bytes(struct.pack("<Q", len(header)) + header + bytes(96))

    report = inspect_model(f"file://{model}", None, "safetensors")

    assert report.metadata == {
        "format": "safetensors",
        "parameterCount": 4 * 8 + 8,
        "tensorCount": 2,
        "dtype": "BF16",
        "fileSize": model.stat().st_size,
    }


def test_unknown_format_is_refused(smollm2: QuickstartModel) -> None:
    with pytest.raises(UnsupportedFormat, match="'onnx'"):
        inspect_model(smollm2.source, None, "onnx")


def test_every_failure_carries_a_condition_reason(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as caught:
        inspect_model(f"file://{tmp_path}/absent.gguf", None, "gguf")

    assert isinstance(caught.value, SourceNotFound)
    assert caught.value.reason == "SourceNotFound"
    assert str(tmp_path) in caught.value.message


def test_file_replaced_between_header_and_hash_is_refused(
    smollm2: QuickstartModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model.gguf"
    with open(smollm2.path, "rb") as source:
        model.write_bytes(source.read(4 * 1024 * 1024))
    os.truncate(model, smollm2.path.stat().st_size)  # same header, sparse data
    read_header_then_grow = _then(inspection.read_gguf_metadata, lambda: _append(model))
    monkeypatch.setattr(inspection, "read_gguf_metadata", read_header_then_grow)

    with pytest.raises(ArtifactUnreadable, match="changed during inspection"):
        inspect_model(f"file://{model}", None, "gguf")


def _append(path: Path) -> None:
    with open(path, "ab") as out:
        out.write(b"tail")


def _then(
    read: Callable[[Path], GGUFInfo], after: Callable[[], None]
) -> Callable[[Path], GGUFInfo]:
    def wrapped(path: Path) -> GGUFInfo:
        info = read(path)
        after()
        return info

    return wrapped
