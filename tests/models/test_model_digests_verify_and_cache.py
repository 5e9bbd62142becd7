"""sha256 digests: streamed in bounded chunks, verified with both digests on mismatch, cached."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from corral.models import (
    ArtifactUnreadable,
    DigestMismatch,
    SourceNotFound,
    digests,
    sha256_file,
    verify_digest,
)

if TYPE_CHECKING:
    from conftest import QuickstartModel


class ProgressLog:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


def _expected(content: bytes) -> str:
    return f"sha256:{hashlib.sha256(content).hexdigest()}"


def test_quickstart_model_has_its_published_digest(smollm2: QuickstartModel) -> None:
    assert sha256_file(smollm2.path) == smollm2.digest


def test_hashing_streams_in_chunks_and_reports_progress(tmp_path: Path) -> None:
    content = os.urandom(10_000)
    model = tmp_path / "m.bin"
    model.write_bytes(content)
    progress = ProgressLog()

    digest = sha256_file(model, chunk_size=4096, progress=progress)

    assert digest == _expected(content)
    assert progress.calls == [(4096, 10_000), (8192, 10_000), (10_000, 10_000)]


def test_matching_digest_verifies(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"weights")

    assert verify_digest(model, _expected(b"weights")) == _expected(b"weights")


def test_mismatch_names_both_digests(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"weights")
    pinned = _expected(b"other weights")

    with pytest.raises(DigestMismatch) as caught:
        verify_digest(model, pinned)

    assert caught.value.expected == pinned
    assert caught.value.actual == _expected(b"weights")
    assert pinned in str(caught.value)
    assert _expected(b"weights") in str(caught.value)
    assert caught.value.reason == "DigestMismatch"


@pytest.mark.parametrize("expected", ["b179c952", "sha256:XYZ", "md5:" + "0" * 32])
def test_malformed_expected_digest_is_refused(tmp_path: Path, expected: str) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"weights")

    with pytest.raises(ValueError, match="sha256:"):
        verify_digest(model, expected)


def test_missing_file_is_source_not_found(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound):
        sha256_file(tmp_path / "absent.bin")


def test_cache_serves_an_unchanged_file_without_reading_it(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"weights" * 1000)
    first, second = ProgressLog(), ProgressLog()

    digest = sha256_file(model, progress=first, cache_dir=tmp_path / "cache")
    again = sha256_file(model, progress=second, cache_dir=tmp_path / "cache")

    assert again == digest == _expected(b"weights" * 1000)
    assert first.calls
    assert second.calls == []


def test_cache_entry_is_dropped_when_the_file_changes(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"version-1")
    sha256_file(model, cache_dir=tmp_path / "cache")
    model.write_bytes(b"version-2")  # same size, same inode
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    progress = ProgressLog()

    digest = sha256_file(model, progress=progress, cache_dir=tmp_path / "cache")

    assert digest == _expected(b"version-2")
    assert progress.calls


def test_rewrite_with_the_old_mtime_put_back_is_still_seen(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"version-1")
    cached = model.stat()
    sha256_file(model, cache_dir=tmp_path / "cache")
    model.write_bytes(b"version-2")
    # File timestamps move in clock ticks of a few ms; restoring the mtime sets ctime to
    # "now", which no caller can choose, so wait for it to leave the cached tick.
    for _ in range(500):
        os.utime(model, ns=(cached.st_atime_ns, cached.st_mtime_ns))
        if model.stat().st_ctime_ns != cached.st_ctime_ns:
            break
        time.sleep(0.002)
    assert model.stat().st_mtime_ns == cached.st_mtime_ns
    assert model.stat().st_size == cached.st_size

    assert sha256_file(model, cache_dir=tmp_path / "cache") == _expected(b"version-2")


def test_replaced_file_is_hashed_again(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"version-1")
    sha256_file(model, cache_dir=tmp_path / "cache")
    replacement = tmp_path / "new.bin"
    replacement.write_bytes(b"version-2")
    replacement.replace(model)

    assert sha256_file(model, cache_dir=tmp_path / "cache") == _expected(b"version-2")


def test_stale_cached_digest_never_fails_a_good_file(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"weights")
    cache_dir = tmp_path / "cache"
    sha256_file(model, cache_dir=cache_dir)
    cache_file = cache_dir / "digests.json"
    document = json.loads(cache_file.read_text())
    document["entries"][str(model)]["digest"] = _expected(b"something else")
    cache_file.write_text(json.dumps(document))
    progress = ProgressLog()

    assert verify_digest(model, _expected(b"weights"), progress=progress, cache_dir=cache_dir)
    assert progress.calls
    assert json.loads(cache_file.read_text())["entries"][str(model)]["digest"] == _expected(
        b"weights"
    )


@pytest.mark.parametrize("garbage", ["{not json", "[1, 2]", '{"version": 99, "entries": {}}'])
def test_corrupt_cache_file_only_costs_a_rehash(tmp_path: Path, garbage: str) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"weights")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "digests.json").write_text(garbage)

    assert sha256_file(model, cache_dir=cache_dir) == _expected(b"weights")
    assert json.loads((cache_dir / "digests.json").read_text())["version"] == 1


def test_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digests, "_MAX_CACHE_ENTRIES", 8)
    cache_dir = tmp_path / "cache"
    for index in range(10):
        model = tmp_path / f"m{index}.bin"
        model.write_bytes(str(index).encode())
        sha256_file(model, cache_dir=cache_dir)

    entries = json.loads((cache_dir / "digests.json").read_text())["entries"]
    assert sorted(entries) == sorted(str(tmp_path / f"m{index}.bin") for index in range(2, 10))


def test_chunk_size_must_be_positive(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"w")

    with pytest.raises(ValueError, match="chunk_size"):
        sha256_file(model, chunk_size=0)


def test_file_growing_while_hashed_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(bytes(64 * 1024))

    def append_once(done: int, _total: int) -> None:
        if done == 4096:
            with open(model, "ab") as out:
                out.write(b"more")

    with pytest.raises(ArtifactUnreadable, match="changed while it was being hashed"):
        sha256_file(model, chunk_size=4096, progress=append_once, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "digests.json").exists()
