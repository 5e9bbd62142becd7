"""Errors the client adds to corral.api's: the ones that happen before any Status comes back."""

from __future__ import annotations

from corral.api.errors import ApiError


class ServerUnreachable(ApiError):
    """No answer from the server (not running, wrong URL, or it timed out)."""

    reason = "ServiceUnavailable"
    code = 503


class NoServerFound(ServerUnreachable):
    """No URL was given and the state dir names no running server."""
