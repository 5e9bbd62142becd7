"""Who is calling: the admin bearer token, and the middleware that demands it.

``corral up`` calls :func:`load_or_create_admin_token` once and prints the token when it was
just created. :class:`BearerAuth` sits in front of ``/apis``, ``/openapi`` and ``/corral/``
(usage, traces, audit); it compares the
presented token in constant time and records the caller as ``scope["corral.actor"]``, which the
handlers pass to the store so that history says who wrote what.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from corral.api.errors import Unauthorized
from corral.apiserver.wire import status_response

TOKEN_FILE = "admin.token"
ADMIN_ACTOR = "admin"
PROTECTED_PREFIXES = ("/apis", "/openapi", "/corral/")


class TokenFileError(Exception):
    """The admin token file cannot be used (unsafe permissions, unreadable, empty)."""


def load_or_create_admin_token(state_dir: Path) -> tuple[str, bool]:
    """The admin token from ``STATE_DIR/admin.token``, creating it (mode 0600) when absent.

    Returns ``(token, created)``; the caller shows a newly created token once. A token file that
    group or others may read or write is refused rather than silently trusted or fixed.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / TOKEN_FILE
    token = secrets.token_urlsafe(32)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_token(path), False
    with os.fdopen(descriptor, "w", encoding="ascii") as token_file:
        token_file.write(token + "\n")
    return token, True


def _read_token(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TokenFileError(
                f"{path} is accessible to group or others (mode {stat.S_IMODE(mode):04o}); "
                f"it holds the admin token: run `chmod 600 {path}` (or delete it to get a new "
                "token)"
            )
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise TokenFileError(f"cannot read the admin token from {path}: {error}") from None
    if not token:
        raise TokenFileError(f"{path} is empty: delete it to have a new admin token created")
    return token


class BearerAuth:
    """ASGI middleware: requests under the protected prefixes need the admin bearer token."""

    def __init__(self, app: ASGIApp, *, admin_token: str) -> None:
        if not admin_token:
            raise ValueError("admin_token must not be empty")
        self._app = app
        self._expected = f"Bearer {admin_token}".encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIXES):
            await self._app(scope, receive, send)
            return
        presented = next(
            (value for key, value in scope["headers"] if key == b"authorization"), None
        )
        problem = self._problem(presented)
        if problem is not None:
            response = status_response(
                Unauthorized(problem), headers={"www-authenticate": 'Bearer realm="corral"'}
            )
            await response(scope, receive, send)
            return
        scope["corral.actor"] = ADMIN_ACTOR
        await self._app(scope, receive, send)

    def _problem(self, presented: bytes | None) -> str | None:
        if presented is None:
            return "authentication required: send 'Authorization: Bearer <token>'"
        if presented[:7].lower() != b"bearer " or not presented[7:].strip():
            return "malformed Authorization header: expected 'Bearer <token>'"
        if not hmac.compare_digest(b"Bearer " + presented[7:].strip(), self._expected):
            return "invalid bearer token"
        return None
