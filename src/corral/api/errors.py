"""Errors shared by the store, the API server and the HTTP client.

Each error maps onto one Kubernetes ``Status`` reason and HTTP code, so an error raised deep in
the store reaches a CLI user unchanged: the server serialises it with :meth:`ApiError.to_status`
and the client rebuilds it with :func:`error_from_status`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class FieldError:
    """One problem at one place; ``path`` is a dotted field path like ``spec.models[0].weight``."""

    path: str
    message: str
    location: str = ""  # "file.yaml[1]" when the object came from a manifest

    def __str__(self) -> str:
        where = f"{self.location} " if self.location else ""
        field = f"{self.path}: " if self.path else ""
        return f"{where}{field}{self.message}"


class ApiError(Exception):
    """Base of every error that crosses a layer boundary; carries a Status reason and code."""

    reason: ClassVar[str] = "InternalError"
    code: ClassVar[int] = 500

    def __init__(self, message: str, *, causes: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.causes: list[FieldError] = list(causes or [])

    def __str__(self) -> str:
        if not self.causes:
            return self.message
        lines = [self.message, *(f"  {cause}" for cause in self.causes)]
        return "\n".join(lines)

    def to_status(self) -> dict[str, Any]:
        """The Kubernetes-style ``Status`` body for this error."""
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": self.reason,
            "code": self.code,
            "message": self.message,
        }
        if self.causes:
            status["details"] = {
                "causes": [
                    {"field": c.path, "message": c.message, "location": c.location}
                    for c in self.causes
                ]
            }
        return status


class BadRequest(ApiError):
    reason = "BadRequest"
    code = 400


class Unauthorized(ApiError):
    reason = "Unauthorized"
    code = 401


class Forbidden(ApiError):
    reason = "Forbidden"
    code = 403


class NotFound(ApiError):
    reason = "NotFound"
    code = 404


class AlreadyExists(ApiError):
    reason = "AlreadyExists"
    code = 409


class Conflict(ApiError):
    """An optimistic-concurrency failure: the caller's resourceVersion is stale. Re-read, retry."""

    reason = "Conflict"
    code = 409


class Gone(ApiError):
    """A watch asked for a resourceVersion older than the retained event log: relist."""

    reason = "Expired"
    code = 410


class PayloadTooLarge(ApiError):
    reason = "RequestEntityTooLarge"
    code = 413


class Invalid(ApiError):
    reason = "Invalid"
    code = 422


_BY_REASON: dict[str, type[ApiError]] = {
    cls.reason: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        AlreadyExists,
        Conflict,
        Gone,
        PayloadTooLarge,
        Invalid,
    )
}


def error_from_status(body: dict[str, Any], http_code: int) -> ApiError:
    """Rebuild the typed error from a ``Status`` body (inverse of :meth:`ApiError.to_status`)."""
    cls = _BY_REASON.get(str(body.get("reason", "")), ApiError)
    causes = [
        FieldError(
            path=str(c.get("field", "")),
            message=str(c.get("message", "")),
            location=str(c.get("location", "")),
        )
        for c in (body.get("details") or {}).get("causes", [])
    ]
    return cls(str(body.get("message") or f"HTTP {http_code}"), causes=causes)
