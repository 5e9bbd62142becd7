"""``create_app``: the API server as one Starlette app over a :class:`Store`.

Request flow: MetricsMiddleware (counts and times) → BearerAuth (``/apis``, ``/openapi``) →
routes. Every resource URL goes to one route whose handler parses the path against the kind
registry (``paths``), picks the verb (``resources``, ``watch``) and turns any error into a
Status body, so no bad input reaches the client as a bare 500 or a plain-text page.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus

import anyio
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from corral.api.errors import ApiError, NotFound
from corral.api.objects import API_VERSION
from corral.api.registry import all_kinds
from corral.apiserver.apply import apply_handler
from corral.apiserver.auth import BearerAuth
from corral.apiserver.metrics import ApiMetrics, MetricsMiddleware
from corral.apiserver.openapi import openapi_document
from corral.apiserver.paths import API_PREFIX, parse_resource_path
from corral.apiserver.resources import route_resource
from corral.apiserver.wire import (
    InternalError,
    JSONResponse,
    MethodNotAllowed,
    ServiceUnavailable,
    json_response,
    status_response,
)
from corral.store.protocol import Store

READY_TIMEOUT_SECONDS = 2.0
_ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

_log = logging.getLogger(__name__)


def create_app(
    store: Store,
    *,
    admin_token: str,
    registry: CollectorRegistry | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The API server over ``store``; metrics go to ``registry`` (a fresh one by default).

    ``extra_routes`` (the governance extensions' ``/corral/...`` routes: usage, traces, audit)
    are tried first and sit behind the same admin token.
    """
    if not admin_token:
        raise ValueError("admin_token must not be empty")
    metrics = ApiMetrics(registry if registry is not None else CollectorRegistry())
    server = _Server(store, metrics)
    app = Starlette(
        routes=[
            *extra_routes,
            # Hottest first (routes are tried in order). Methods are checked by the handlers,
            # which answer a 405 Status naming the allowed ones.
            Route(f"{API_PREFIX}/apply", server.apply, methods=_ANY_METHOD),
            Route(API_PREFIX + "/{rest:path}", server.resource, methods=_ANY_METHOD),
            Route(API_PREFIX, server.discovery, methods=_ANY_METHOD),
            Route("/healthz", _healthz, methods=["GET"]),
            Route("/readyz", server.readyz, methods=["GET"]),
            Route("/metrics", server.metrics, methods=["GET"]),
            Route("/openapi/v3", server.openapi, methods=["GET"]),
        ],
        middleware=[
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(BearerAuth, admin_token=admin_token),
        ],
        exception_handlers={HTTPException: _http_exception, Exception: _unexpected},
    )
    app.state.store = store
    app.state.metrics = metrics
    return app


class _Server:
    def __init__(self, store: Store, metrics: ApiMetrics) -> None:
        self._store = store
        self._metrics = metrics
        self._openapi_for: tuple[int, ...] = ()
        self._openapi_body = b""

    async def resource(self, request: Request) -> Response:
        rest = request.path_params["rest"].rstrip("/")
        if not rest:
            return await self.discovery(request)

        async def handle() -> Response:
            path = parse_resource_path(rest)
            request.scope["corral.kind"] = path.info.kind
            verb, handler = route_resource(request.method, path, request)
            request.scope["corral.verb"] = verb
            return await handler(self._store, request, path)

        return await _answering_errors(handle)

    async def apply(self, request: Request) -> Response:
        async def handle() -> Response:
            request.scope["corral.verb"] = "apply"
            if request.method != "POST":
                raise MethodNotAllowed(request.method, "POST")
            return await apply_handler(self._store, request)

        return await _answering_errors(handle)

    async def discovery(self, request: Request) -> Response:
        async def handle() -> Response:
            if request.method != "GET":
                raise MethodNotAllowed(request.method, "GET")
            return json_response(_resource_list())

        return await _answering_errors(handle)

    async def openapi(self, _request: Request) -> Response:
        kinds = tuple(id(info) for info in all_kinds())
        if kinds != self._openapi_for:
            # Rendered once per set of registered kinds: a plugin kind shows up on the next GET.
            self._openapi_body = orjson.dumps(openapi_document())
            self._openapi_for = kinds
        return Response(self._openapi_body, media_type="application/json")

    async def readyz(self, _request: Request) -> Response:
        try:
            with anyio.fail_after(READY_TIMEOUT_SECONDS):
                await self._store.current_resource_version()
        except Exception as error:
            return status_response(ServiceUnavailable(f"the store is not reachable: {error!r}"))
        return PlainTextResponse("ok")

    async def metrics(self, _request: Request) -> Response:
        await self._metrics.refresh_object_counts(self._store)
        return Response(generate_latest(self._metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _healthz(_request: Request) -> Response:
    return PlainTextResponse("ok")


async def _answering_errors(handle: Callable[[], Awaitable[Response]]) -> Response:
    try:
        return await handle()
    except ApiError as error:
        return status_response(error)
    except Exception:
        _log.exception("unexpected error in an API request")
        return status_response(InternalError("internal error; the server log has the details"))


def _resource_list() -> dict[str, object]:
    resources: list[dict[str, object]] = []
    for info in all_kinds():
        resources.append(
            {
                "name": info.plural,
                "singularName": info.singular,
                "namespaced": info.namespaced,
                "kind": info.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                "shortNames": list(info.short_names),
            }
        )
        for subresource, verbs in (("status", ["get", "patch", "update"]), ("history", ["get"])):
            resources.append(
                {
                    "name": f"{info.plural}/{subresource}",
                    "singularName": "",
                    "namespaced": info.namespaced,
                    "kind": info.kind,
                    "verbs": verbs,
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": resources,
    }


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own routing answers (unknown path, wrong method) as Status bodies."""
    assert isinstance(exc, HTTPException)
    error: ApiError
    if exc.status_code == 404:
        error = NotFound(f"no such path: {request.url.path}")
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        error = MethodNotAllowed(request.method, allowed)
    else:
        status = ApiError(exc.detail).to_status()
        status.update(
            code=exc.status_code, reason=HTTPStatus(exc.status_code).phrase.replace(" ", "")
        )
        return JSONResponse(status, exc.status_code)
    return status_response(error)


async def _unexpected(request: Request, exc: Exception) -> Response:
    _log.error("unexpected error serving %s", request.url.path, exc_info=exc)
    return JSONResponse(
        InternalError("internal error; the server log has the details").to_status(), 500
    )
