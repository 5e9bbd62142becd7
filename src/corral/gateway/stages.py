"""The checks every request passes before it is forwarded: who calls, what they sent, to where.

``authenticate_with`` runs first so an unauthenticated caller never costs a body read; ``read_json``
enforces the body limit (Content-Length first, then counting while reading) and a deadline for
the whole body (a client that trickles it gets a 408 instead of holding the request open
forever; skipped when the server says the body is already here: an ASGI ``receive`` whose
owner has ``whole_body_buffered`` true, as corral's own server offers), and parses with
orjson; ``resolve_endpoint`` turns the ``model`` field into a route from the request's snapshot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from corral.gateway import deadlines
from corral.gateway.call import Call, Handler, Message, Stage
from corral.gateway.errors import (
    GatewayError,
    bad_request,
    model_not_found,
    payload_too_large,
    unauthorized,
)
from corral.identity import Principal

Authenticate = Callable[[str | None], "Principal | bool | None"]
"""Says who a bearer token (None when absent) belongs to: a ``Principal``, or just whether it
is accepted (``True``); a falsy answer refuses the request."""


def authenticate_with(check: Authenticate) -> Stage:
    """Refuse with 401 unless ``check`` accepts the bearer token (None when none was sent);
    a ``Principal`` it returns is kept on the call for the stages after it."""

    async def authenticate_stage(call: Call, call_next: Handler) -> None:
        header = call.header(b"authorization")
        token = None
        if header is not None:
            scheme, _, credentials = header.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                token = credentials.strip()
        accepted = check(token)
        if not accepted:
            if token is None:
                raise unauthorized(
                    "missing API key: send the header 'Authorization: Bearer <token>'"
                )
            raise unauthorized("invalid API key in the Authorization header")
        call.token = token
        if isinstance(accepted, Principal):
            call.principal = accepted
        await call_next(call)

    return authenticate_stage


BODY_READ_TIMEOUT_S = 30.0
"""The whole request body must arrive within this long after the stage starts reading it."""


def read_json(max_body_bytes: int, *, body_timeout_s: float = BODY_READ_TIMEOUT_S) -> Stage:
    """Read the body (at most ``max_body_bytes``, within ``body_timeout_s``) and parse it as a
    JSON object with a model."""

    async def read_json_stage(call: Call, call_next: Handler) -> None:
        if getattr(getattr(call.receive, "__self__", None), "whole_body_buffered", False):
            call.body = await _read_body(call, max_body_bytes)  # here already: nothing to time
        else:
            call.body = await _read_body_within(call, max_body_bytes, body_timeout_s)
        payload = _parse_object(call.body)
        model = payload.get("model")
        if model is None:
            raise bad_request("you must provide a model parameter", param="model")
        if not isinstance(model, str) or not model:
            raise bad_request(
                f"model: must be a non-empty string naming an Endpoint, got {model!r}",
                param="model",
            )
        messages = payload.get("messages")
        if messages is not None and not isinstance(messages, list):
            # Every later stage that estimates tokens walks the messages: refuse here, once.
            raise bad_request(
                f"messages: must be an array of message objects, got {type(messages).__name__}",
                param="messages",
            )
        call.payload = payload
        call.stream = payload.get("stream") is True
        await call_next(call)

    return read_json_stage


async def _read_body_within(call: Call, limit: int, timeout_s: float) -> bytes:
    # What asyncio.timeout does, minus its bookkeeping (see corral.gateway.deadlines).
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("read_json runs inside an asyncio task")
    watch = _BodyDeadline(task)
    deadline = deadlines.arm(timeout_s, watch.expire)
    try:
        return await _read_body(call, limit)
    except asyncio.CancelledError:
        if not watch.expired or task.uncancel() > watch.cancelling:
            raise
        raise GatewayError(
            408,
            f"the request body did not arrive within {timeout_s:g} seconds",
            code="request_timeout",
            headers=[(b"connection", b"close")],
        ) from None
    finally:
        deadline.cancel()


class _BodyDeadline:
    """Cancels the request's task when the body is late; says whether that cancel was its own."""

    __slots__ = ("cancelling", "expired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelling = task.cancelling()  # cancels beyond these are someone else's
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        self.task.cancel()


async def resolve_endpoint(call: Call, call_next: Handler) -> None:
    """Find the Endpoint the ``model`` field names (404 ``model_not_found`` when none)."""
    model: str = call.payload["model"]
    endpoint = call.routes.lookup(model)
    if endpoint is None:
        raise model_not_found(model)
    call.endpoint = endpoint
    await call_next(call)


async def _read_body(call: Call, limit: int) -> bytes:
    declared = call.header(b"content-length")
    if declared is not None:
        if not declared.isdigit():
            raise bad_request(
                f"Content-Length header {declared.decode('latin-1')!r} is not a number"
            )
        if int(declared) > limit:
            raise payload_too_large(limit)
    receive = call.receive
    message = await receive()
    body: bytes = _request_body(message)
    if not message.get("more_body", False):
        if len(body) > limit:
            raise payload_too_large(limit)
        return body
    # Chunked uploads have no Content-Length: count as the pieces arrive.
    pieces, size = [body], len(body)
    while message.get("more_body", False):
        message = await receive()
        piece = _request_body(message)
        size += len(piece)
        if size > limit:
            raise payload_too_large(limit)
        pieces.append(piece)
    return b"".join(pieces)


def _request_body(message: Message) -> bytes:
    if message["type"] != "http.request":
        raise bad_request("the client disconnected before sending the whole body")
    body: bytes = message.get("body", b"")
    return body


def _parse_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise bad_request("request body is empty: expected a JSON object")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as bad_utf8:
            raise bad_request(
                f"request body is not valid UTF-8 (bad byte at offset {bad_utf8.start})"
            ) from None
        raise bad_request(f"request body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise bad_request(f"request body must be a JSON object, got {type(payload).__name__}")
    return payload
