"""Errors the client adds to corral.api's: no answer at all, and the gateway's OpenAI errors."""

from __future__ import annotations

from corral.api.errors import ApiError


class ServerUnreachable(ApiError):
    """No answer from the server (not running, wrong URL, or it timed out)."""

    reason = "ServiceUnavailable"
    code = 503


class NoServerFound(ServerUnreachable):
    """No URL was given and the state dir names no running server."""


class CompletionError(ApiError):
    """The gateway refused or failed a completion: the OpenAI error's message, status and code."""

    def __init__(
        self, message: str, *, status: int, error_type: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.error_code = code


class IncompleteStream(CompletionError):
    """A streamed reply stopped before its end (the connection dropped, or no final event)."""
