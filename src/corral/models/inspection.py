"""The whole artifact check for one Model spec: resolve, read the header, hash, verify.

What the Model controller calls on each reconcile. It blocks (hashing reads the whole file),
so an async caller runs it in a thread (``asyncio.to_thread``); ``progress`` is then called
from that thread. Order matters for the messages users see: the cheap header read comes
before the hash, so a wrong or truncated file is reported as such ("not a GGUF file",
"truncated") rather than as a bare digest mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corral.models.digests import Progress, sha256_file, verify_digest
from corral.models.errors import ArtifactUnreadable, UnsupportedFormat
from corral.models.metadata import GGUFInfo, read_gguf_metadata
from corral.models.safetensors import SafetensorsInfo, read_safetensors_metadata
from corral.models.sources import resolve_source


@dataclass(frozen=True)
class ArtifactReport:
    """What the check found; ``verified`` is True only when a pinned digest matched."""

    source: str
    path: Path
    format: str
    size: int
    digest: str
    verified: bool
    info: GGUFInfo | SafetensorsInfo

    @property
    def metadata(self) -> dict[str, object]:
        return self.info.to_dict()

    def status_fields(self) -> dict[str, object]:
        """The fields of ``Model.status`` this report fills, with their status names."""
        return {
            "path": str(self.path),
            "sizeBytes": self.size,
            "digest": self.digest,
            "metadata": self.metadata,
        }


def inspect_model(
    source: str,
    expected_digest: str | None,
    format: str,
    *,
    digest_cache_dir: Path | str | None = None,
    progress: Progress | None = None,
) -> ArtifactReport:
    """Check the artifact a Model names; raises an ``ArtifactError`` subclass on any failure."""
    if format not in ("gguf", "safetensors"):
        raise UnsupportedFormat(
            f"{source!r}: format {format!r} is not one corral can inspect (gguf, safetensors)"
        )
    path = resolve_source(source)
    info: GGUFInfo | SafetensorsInfo = (
        read_gguf_metadata(path) if format == "gguf" else read_safetensors_metadata(path)
    )
    if expected_digest is None:
        digest = sha256_file(path, progress=progress, cache_dir=digest_cache_dir)
    else:
        digest = verify_digest(path, expected_digest, progress=progress, cache_dir=digest_cache_dir)
    _check_unchanged(path, info.file_size)
    return ArtifactReport(
        source=source,
        path=path,
        format=format,
        size=info.file_size,
        digest=digest,
        verified=expected_digest is not None,
        info=info,
    )


def _check_unchanged(path: Path, header_size: int) -> None:
    # The header and the hash are two reads; a file replaced in between would pair one
    # version's metadata with another's digest.
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ArtifactUnreadable(f"{path}: vanished during inspection: {error}") from error
    if size != header_size:
        raise ArtifactUnreadable(
            f"{path}: changed during inspection ({header_size} bytes, then {size}); "
            "a copy or download still in progress?"
        )
