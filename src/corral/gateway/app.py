"""The gateway as a raw ASGI application: path dispatch, the stage chains, error rendering.

``create_gateway`` builds one ``Gateway``; a server (uvicorn with uvloop and httptools, see
``corral.gateway.server``) calls it per request. No web framework sits on the hot path: the app
reads the ASGI scope itself and answers from pre-composed chains.

Mounting: the app serves ``/v1/models``, ``/v1/models/{id}``, ``/v1/chat/completions``,
``/v1/completions`` and ``/v1/embeddings`` below its mount point, and its OpenAPI document at
``/v1/openapi.json`` (no auth). Mount it at the root (its
own port, or dispatch every ``/v1/`` path to it unchanged). A ``root_path`` set by the server
or a parent app is stripped first, so under a prefix ``/gw`` it answers ``/gw/v1/...``.
"""

from __future__ import annotations

import logging
import random as _random
import time
from collections.abc import Callable, Sequence

from corral.gateway.balancer import Balancer
from corral.gateway.call import Call, Handler, Receive, Scope, Send, Stage, compose
from corral.gateway.errors import GatewayError, model_not_found
from corral.gateway.forward import PromptEstimate, forward
from corral.gateway.http1 import HttpTransport
from corral.gateway.openapi import DOCUMENT_JSON, OPENAPI_PATH
from corral.gateway.routes import RouteSource
from corral.gateway.stages import Authenticate, authenticate_with, read_json, resolve_endpoint
from corral.gateway.transport import UpstreamTransport

log = logging.getLogger("corral.gateway")

_JSON_HEADERS = [(b"content-type", b"application/json")]
_MODEL_PREFIX = "/v1/models/"


class Gateway:
    """The ASGI app. ``aclose`` closes the upstream transport if the gateway created it."""

    def __init__(
        self,
        routes: RouteSource,
        *,
        authenticate_stage: Stage,
        inference: Handler,
        transport: UpstreamTransport,
        owns_transport: bool,
        balancer: Balancer,
    ) -> None:
        self.routes = routes
        self.balancer = balancer
        self._transport = transport
        self._owns_transport = owns_transport
        self._handlers: dict[str, dict[str, Handler]] = {
            "/v1/chat/completions": {"POST": inference},
            "/v1/completions": {"POST": inference},
            "/v1/embeddings": {"POST": inference},
            "/v1/models": {"GET": compose([authenticate_stage], _list_models)},
            OPENAPI_PATH: {"GET": _openapi_document},  # public, like any API description
        }
        self._model_handlers = {"GET": compose([authenticate_stage], _retrieve_model)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        methods = self._handlers.get(path)
        if methods is None and path.startswith(_MODEL_PREFIX):
            methods = self._model_handlers
        call = Call(scope, receive, send, path, self.routes.current)
        try:
            if methods is None:
                raise GatewayError(
                    404, f"Unknown request URL: {scope['method']} {path}", code="unknown_url"
                )
            handler = methods.get(scope["method"])
            if handler is None:
                allowed = ", ".join(methods)
                raise GatewayError(
                    405,
                    f"{scope['method']} is not allowed on {path} (allowed: {allowed})",
                    code="method_not_allowed",
                    headers=[(b"allow", allowed.encode())],
                )
            await handler(call)
        except GatewayError as error:
            if call.response_started:
                log.warning("error after the response started, not sent: %s", error.message)
                return
            await _respond(call, error.status, error.body(), error.headers)

    async def aclose(self) -> None:
        if self._owns_transport:
            await self._transport.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_gateway(
    routes: RouteSource,
    *,
    authenticate: Authenticate,
    transport: UpstreamTransport | None = None,
    stages: Sequence[Stage] = (),
    route_stages: Sequence[Stage] = (),
    random: Callable[[], float] = _random.random,
    clock: Callable[[], float] = time.monotonic,
    max_body_bytes: int = 8 * 1024 * 1024,
    max_attempts: int = 3,
    retry_after_seconds: int = 5,
    estimate_prompt_tokens: PromptEstimate | None = None,
) -> Gateway:
    """Build the gateway ASGI app.

    ``authenticate`` gets the bearer token (None when absent) and says whether it is accepted,
    or who it belongs to (a ``corral.identity.Principal``, kept as ``Call.principal``).
    ``stages`` run, in order, after the Endpoint is resolved and before the request is forwarded;
    ``route_stages`` before the Endpoint is resolved (they may answer a request themselves, as
    the agents extension answers ``model: "agent:NAME"``).
    ``transport`` defaults to a pooled ``HttpTransport`` that the gateway closes on shutdown.
    ``max_attempts`` bounds the replicas tried per Endpoint per request (the first try included;
    a fallback Endpoint gets as many). ``random`` and ``clock`` (ejections, retry budgets) are
    injectable for tests; timeouts run on the event loop's clock. ``estimate_prompt_tokens``
    lets the gateway supply the usage chunk a streaming client asked for
    (``stream_options.include_usage``) when the upstream sends none (without it, such a stream
    ends without one, as the upstream sent it).
    """
    if max_body_bytes < 1 or max_attempts < 1 or retry_after_seconds < 0:
        raise ValueError("max_body_bytes and max_attempts must be >= 1, retry_after_seconds >= 0")
    owns_transport = transport is None
    upstream = transport if transport is not None else HttpTransport()
    balancer = Balancer(random, clock)
    authenticate_stage = authenticate_with(authenticate)
    inference = compose(
        [authenticate_stage, read_json(max_body_bytes), *route_stages, resolve_endpoint, *stages],
        forward(
            upstream,
            balancer,
            max_attempts=max_attempts,
            retry_after_seconds=retry_after_seconds,
            estimate_prompt_tokens=estimate_prompt_tokens,
        ),
    )
    return Gateway(
        routes,
        authenticate_stage=authenticate_stage,
        inference=inference,
        transport=upstream,
        owns_transport=owns_transport,
        balancer=balancer,
    )


async def _list_models(call: Call) -> None:
    await _respond(call, 200, call.routes.models_body)


async def _openapi_document(call: Call) -> None:
    await _respond(call, 200, DOCUMENT_JSON)


async def _retrieve_model(call: Call) -> None:
    model = call.path[len(_MODEL_PREFIX) :]
    endpoint = call.routes.lookup(model)
    if endpoint is None:
        raise model_not_found(model)
    await _respond(call, 200, endpoint.model_entry)


async def _respond(
    call: Call, status: int, body: bytes, extra_headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *extra_headers]
    call.response_started = True
    await call.send({"type": "http.response.start", "status": status, "headers": headers})
    await call.send({"type": "http.response.body", "body": body})
