"""Prometheus metrics of the API server, served at ``/metrics``.

:class:`MetricsMiddleware` wraps the whole app and counts every API request by verb, kind and
code (the resource handlers name the verb and kind in the ASGI scope), times the non-watch ones,
and tracks open watch streams. Object counts per kind are read from the store at scrape time,
so they are right however the objects were written (through this server or not).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.api.registry import all_kinds
from corral.store.protocol import Store

_SCRAPE_PAGE = 1000
_DEFAULT_VERBS = {
    "GET": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
_COUNTED_PREFIXES = ("/apis", "/openapi")

_log = logging.getLogger(__name__)


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "corral_apiserver_requests",
            "API requests by verb, kind and HTTP code.",
            ["verb", "kind", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "corral_apiserver_request_duration_seconds",
            "Time to answer an API request (watches excluded).",
            ["verb", "kind"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.watch_streams = Gauge(
            "corral_apiserver_watch_streams", "Watch streams open now.", registry=registry
        )
        self.objects = Gauge(
            "corral_apiserver_objects", "Objects in the store by kind.", ["kind"], registry=registry
        )

    async def refresh_object_counts(self, store: Store) -> None:
        for info in all_kinds():
            try:
                count = await _count(store, info.kind)
            except Exception:
                # A scrape must still answer when the store is away; readyz reports that.
                _log.warning("cannot count %s objects for /metrics", info.kind, exc_info=True)
                continue
            self.objects.labels(info.kind).set(count)


async def _count(store: Store, kind: str) -> int:
    total = 0
    token: str | None = None
    while True:
        page = await store.list(kind, None, limit=_SCRAPE_PAGE, continue_token=token)
        total += len(page.items)
        token = page.continue_token
        if not token:
            return total


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(_COUNTED_PREFIXES):
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        outcome: dict[str, Any] = {"code": 500, "watching": False}

        async def send_counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome["code"] = message["status"]
                if scope.get("corral.verb") == "watch":
                    self._metrics.watch_streams.inc()
                    outcome["watching"] = True
            await send(message)

        try:
            await self._app(scope, receive, send_counting)
        finally:
            if outcome["watching"]:
                self._metrics.watch_streams.dec()
            verb = scope.get("corral.verb") or _DEFAULT_VERBS.get(scope["method"], "other")
            kind = scope.get("corral.kind", "")
            self._metrics.requests.labels(verb, kind, str(outcome["code"])).inc()
            if verb != "watch":
                self._metrics.latency.labels(verb, kind).observe(time.perf_counter() - started)
