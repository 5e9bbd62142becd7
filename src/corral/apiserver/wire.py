"""The HTTP edge of every API request: bounded JSON bodies in, JSON and Status bodies out.

Every handler reads its body through :func:`read_json_body` and answers through
:func:`json_response` or :func:`status_response`, so size limits, encoding errors and the
``Status`` shape are decided here once and every failure looks the same to clients.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from corral.api.errors import ApiError, BadRequest, PayloadTooLarge

MAX_OBJECT_BODY = 3 * 512 * 1024
"""1.5 MiB: room for a 1 MiB object plus JSON overhead; larger single-object bodies get 413."""

MAX_APPLY_BODY = 64 * 1024 * 1024
"""A whole manifest tree in one ``/apply`` request."""

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


class UnsupportedMediaType(ApiError):
    reason = "UnsupportedMediaType"
    code = 415


class MethodNotAllowed(ApiError):
    reason = "MethodNotAllowed"
    code = 405

    def __init__(self, method: str, allowed: str) -> None:
        super().__init__(f"{method} is not allowed here; allowed: {allowed}")
        self.allowed = allowed


class ServiceUnavailable(ApiError):
    reason = "ServiceUnavailable"
    code = 503


class InternalError(ApiError):
    reason = "InternalError"
    code = 500


class JSONResponse(Response):
    """A JSON response rendered with orjson (several times faster than the stdlib encoder)."""

    media_type: ClassVar[str] = JSON  # type: ignore[misc]

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json_response(content: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(content, status_code=status_code)


def status_response(error: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The error as a Status body with its HTTP code (and ``Allow`` for a 405)."""
    if isinstance(error, MethodNotAllowed):
        headers = {**(headers or {}), "allow": error.allowed}
    return JSONResponse(error.to_status(), status_code=error.code, headers=headers)


def media_type_of(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def require_json_body(request: Request) -> None:
    """Refuse bodies declared as something other than JSON (no declaration means JSON)."""
    media_type = media_type_of(request)
    if media_type and media_type != JSON and not media_type.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type {media_type!r} is not supported; send {JSON}")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing it with 413 as soon as it is known to exceed ``limit`` bytes.

    A declared Content-Length over the limit is refused before any byte is read; an undeclared
    (chunked) or understated body is counted while it arrives and refused at the first chunk
    that crosses the limit, so a huge upload never sits in memory.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise _too_large(received, limit, at_least=True)
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequest("the client disconnected before sending the whole body") from None
    return b"".join(chunks)


async def read_json_body(request: Request, limit: int = MAX_OBJECT_BODY) -> Any:
    require_json_body(request)
    return parse_json(await read_body(request, limit))


def parse_json(body: bytes) -> Any:
    if not body:
        raise BadRequest("the request body is empty; expected a JSON document")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as bad_bytes:
            raise BadRequest(
                f"the request body is not valid UTF-8 (byte {bad_bytes.start}): send UTF-8 JSON"
            ) from None
        raise BadRequest(
            f"malformed JSON in the request body at line {error.lineno}, column {error.colno}: "
            f"{error.msg}"
        ) from None


def _too_large(size: int, limit: int, *, at_least: bool = False) -> PayloadTooLarge:
    amount = f"more than {limit}" if at_least else str(size)
    return PayloadTooLarge(f"the request body is {amount} bytes; the limit is {limit} bytes")
