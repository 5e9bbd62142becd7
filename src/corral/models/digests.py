"""sha256 of model files, streamed, with an optional cache so restarts do not re-hash.

Second step of the Model check (:func:`corral.models.inspect_model`), after the source is
resolved. Hashing reads the whole file through one fixed buffer, so memory stays at
``chunk_size`` whatever the model's size.

The digest cache trade-off: a restart would otherwise re-read every model (gigabytes each),
so a JSON file in a caller-given directory remembers the digest of each file together with
its size, mtime, ctime, inode and device. Any ordinary write, replacement, copy or rename
onto the path changes one of those, so the entry stops matching and the file is hashed again.
What the cache cannot see is a change that keeps all of them — raw writes to the block
device, or a filesystem with coarse timestamps rewritten twice within one tick at the same
size. Two guards narrow that: a cached digest that disagrees with the Model's expected one
is re-computed before a mismatch is reported, so a stale entry never fails a good file; and a
caller that must prove the bytes (an audit, a first admission) passes no cache directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.models.errors import ArtifactUnreadable, DigestMismatch, SourceNotFound

Progress = Callable[[int, int], None]
"""Called as ``progress(bytes_hashed, total_bytes)`` after each chunk."""

DEFAULT_CHUNK_SIZE = 1 << 20
DIGEST_CACHE_FILE = "digests.json"
_MAX_CACHE_ENTRIES = 512
_CACHE_VERSION = 1
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

_log = logging.getLogger(__name__)


def sha256_file(
    path: Path | str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
    cache_dir: Path | str | None = None,
) -> str:
    """``sha256:<hex>`` of the file; reuses a cached digest when the file is unchanged.

    ``progress`` is not called when the digest comes from the cache: nothing is read.
    """
    return _digest(Path(path), chunk_size, progress, cache_dir, trust_cache=True)


def verify_digest(
    path: Path | str,
    expected: str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
    cache_dir: Path | str | None = None,
) -> str:
    """Return the file's digest if it is ``expected``; raise :class:`DigestMismatch` if not."""
    if not _DIGEST.match(expected):
        raise ValueError(
            f"expected digest {expected!r} is not 'sha256:' + 64 lower-case hex digits"
        )
    file = Path(path)
    actual = _digest(file, chunk_size, progress, cache_dir, trust_cache=True)
    if actual != expected and cache_dir is not None:
        actual = _digest(file, chunk_size, progress, cache_dir, trust_cache=False)
    if actual != expected:
        raise DigestMismatch(file, expected, actual)
    return actual


def _digest(
    path: Path,
    chunk_size: int,
    progress: Progress | None,
    cache_dir: Path | str | None,
    *,
    trust_cache: bool,
) -> str:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1 byte, got {chunk_size}")
    cache = _DigestCache(Path(cache_dir)) if cache_dir is not None else None
    if cache is not None and trust_cache:
        identity = _identity(_stat(path))
        if (cached := cache.lookup(path, identity)) is not None:
            return cached
    digest, identity = _hash_file(path, chunk_size, progress)
    if cache is not None:
        cache.store(path, identity, digest)
    return digest


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError as error:
        raise SourceNotFound(f"{path}: no such file") from error
    except OSError as error:
        raise ArtifactUnreadable(f"{path}: cannot stat: {error.strerror or error}") from error


def _identity(stat: os.stat_result) -> dict[str, int]:
    return {
        "size": stat.st_size,
        "mtimeNs": stat.st_mtime_ns,
        "ctimeNs": stat.st_ctime_ns,
        "inode": stat.st_ino,
        "device": stat.st_dev,
    }


def _hash_file(
    path: Path, chunk_size: int, progress: Progress | None
) -> tuple[str, dict[str, int]]:
    hasher = hashlib.sha256()
    buffer = bytearray(chunk_size)
    try:
        with open(path, "rb", buffering=0) as file, memoryview(buffer) as view:
            before = _identity(os.fstat(file.fileno()))
            total, done = before["size"], 0
            while read := file.readinto(view):
                hasher.update(view[:read])
                done += read
                if progress is not None:
                    progress(done, total)
            after = _identity(os.fstat(file.fileno()))
    except FileNotFoundError as error:
        raise SourceNotFound(f"{path}: no such file") from error
    except IsADirectoryError as error:
        raise ArtifactUnreadable(f"{path}: is a directory, not a model file") from error
    except OSError as error:
        raise ArtifactUnreadable(f"{path}: cannot read: {error.strerror or error}") from error
    if after != before or done != before["size"]:
        raise ArtifactUnreadable(
            f"{path}: the file changed while it was being hashed (a copy or download still "
            "in progress?); the digest would describe no single version of it"
        )
    return f"sha256:{hasher.hexdigest()}", before


class _DigestCache:
    """One JSON file of ``{path: identity + digest}``; a broken one only costs time."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._file = directory / DIGEST_CACHE_FILE

    def lookup(self, path: Path, identity: dict[str, int]) -> str | None:
        entry = self._load().get(str(path.absolute()))
        if not isinstance(entry, dict):
            return None
        if any(entry.get(field) != value for field, value in identity.items()):
            return None
        digest = entry.get("digest")
        return digest if isinstance(digest, str) and _DIGEST.match(digest) else None

    def store(self, path: Path, identity: dict[str, int], digest: str) -> None:
        entries = self._load()
        entries[str(path.absolute())] = {**identity, "digest": digest, "checkedAt": time.time()}
        if len(entries) > _MAX_CACHE_ENTRIES:
            oldest_first = sorted(entries, key=lambda key: _checked_at(entries[key]))
            for key in oldest_first[: len(entries) - _MAX_CACHE_ENTRIES]:
                del entries[key]
        document = {"version": _CACHE_VERSION, "entries": entries}
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
            # Write-then-rename: a reader (another process) sees the old file or the new one,
            # never half of one.
            handle, temporary = tempfile.mkstemp(dir=self._directory, prefix=".digests.")
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    json.dump(document, out, separators=(",", ":"))
                os.replace(temporary, self._file)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as error:
            _log.warning("digest cache %s not written: %s", self._file, error)

    def _load(self) -> dict[str, Any]:
        try:
            document = json.loads(self._file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            _log.warning("digest cache %s ignored (unreadable: %s)", self._file, error)
            return {}
        if not isinstance(document, dict) or document.get("version") != _CACHE_VERSION:
            _log.warning("digest cache %s ignored (unknown layout)", self._file)
            return {}
        entries = document.get("entries")
        if not isinstance(entries, dict):
            _log.warning("digest cache %s ignored (unknown layout)", self._file)
            return {}
        return entries


def _checked_at(entry: Any) -> float:
    value = entry.get("checkedAt") if isinstance(entry, dict) else None
    return float(value) if isinstance(value, int | float) else 0.0
