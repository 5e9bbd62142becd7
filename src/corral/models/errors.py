"""Typed failures of the model-artifact checks.

The Model controller turns each into a condition as it is: ``reason`` is the condition's
reason and ``str(error)`` its message, so every message says what is wrong, where, and what
to do about it.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar


class ArtifactError(Exception):
    """Base of every model-artifact failure; ``reason`` is a CamelCase condition reason."""

    reason: ClassVar[str] = "ArtifactError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidSource(ArtifactError):
    """The source string itself is malformed: unknown scheme, relative path, bad package name."""

    reason = "InvalidSource"


class SourceNotFound(ArtifactError):
    """The source is well formed but names nothing that exists (no file, no package)."""

    reason = "SourceNotFound"


class SourceUnavailable(ArtifactError):
    """The source exists somewhere else but cannot be fetched from here (no hub reachable)."""

    reason = "SourceUnavailable"


class ArtifactUnreadable(ArtifactError):
    """The file exists but cannot be read whole: permissions, a directory, truncated, corrupt."""

    reason = "Unreadable"


class UnsupportedFormat(ArtifactError):
    """The Model asks for a format this library does not inspect."""

    reason = "UnsupportedFormat"


class NotGGUF(ArtifactError):
    """The Model says ``format: gguf`` but the file is something else."""

    reason = "NotGGUF"


class NotSafetensors(ArtifactError):
    """The Model says ``format: safetensors`` but the file is something else."""

    reason = "NotSafetensors"


class DigestMismatch(ArtifactError):
    """The file's sha256 is not the one the Model pins."""

    reason = "DigestMismatch"

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        super().__init__(
            f"{path}: digest mismatch: the Model expects {expected} but the file is {actual}; "
            "either the file changed (replace it with the intended one) or spec.digest is wrong"
        )
        self.path = path
        self.expected = expected
        self.actual = actual
