"""One listening port per process, and what answers on it.

:class:`Dispatcher` is the ASGI app the port runs: ``/v1/...`` goes to the gateway (a
``startswith`` or two on the hot path, nothing else) unless a mounted app (the sessions API
under ``/v1/agents/``) owns the prefix, the Endpoint logs route to the controllers' log
reader, ``/.well-known/...`` to the public routes (the JWKS), and everything else to the API
server — or, in a process without one, to :class:`HealthApp` (``/healthz``, ``/readyz``,
``/metrics``). Also here: binding the listener. The server that runs the dispatcher is
:class:`corral.server.http_server.HttpServer`.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from corral.api.errors import NotFound
from corral.api.objects import API_VERSION

GRACEFUL_SHUTDOWN_S = 3
"""How long open requests (watch streams) may run on after a stop before they are cut."""
GATEWAY_PREFIX = "/v1/"
PUBLIC_PREFIX = "/.well-known/"
LOGS_PREFIX = f"/apis/{API_VERSION}/namespaces/"
LOGS_SUFFIX = "/logs"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_log = logging.getLogger(__name__)


class Dispatcher:
    """Routes each request to the app that owns its path; lifespan is answered here."""

    __slots__ = ("_gateway", "_logs", "_mount_prefixes", "_mounts", "_public", "_rest")

    def __init__(
        self,
        *,
        rest: App,
        gateway: App | None = None,
        logs: App | None = None,
        public: App | None = None,
        mounts: tuple[tuple[str, App], ...] = (),
    ) -> None:
        self._gateway = gateway
        self._logs = logs
        self._public = public
        self._rest = rest
        self._mounts = mounts
        # One C-level startswith for the common case, a gateway path below no mount.
        self._mount_prefixes = tuple(prefix for prefix, _app in mounts)
        for prefix, _app in mounts:
            if not prefix.startswith(GATEWAY_PREFIX) or prefix == GATEWAY_PREFIX:
                raise ValueError(f"mount {prefix!r}: expected a prefix below {GATEWAY_PREFIX}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(GATEWAY_PREFIX):
                if path.startswith(self._mount_prefixes):
                    for prefix, app in self._mounts:
                        if path.startswith(prefix):
                            await app(scope, receive, send)
                            return
                if self._gateway is not None:
                    await self._gateway(scope, receive, send)
                else:
                    await self._rest(scope, receive, send)
            elif self._logs is not None and is_logs_path(path):
                await self._logs(scope, receive, send)
            elif self._public is not None and path.startswith(PUBLIC_PREFIX):
                await self._public(scope, receive, send)
            else:
                await self._rest(scope, receive, send)
        elif scope["type"] == "lifespan":
            # The composition root starts and closes the apps itself.
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return


def is_logs_path(path: str) -> bool:
    """Cheap pre-check; the logs app parses the path properly (404 when it is no Endpoint's)."""
    return path.endswith(LOGS_SUFFIX) and path.startswith(LOGS_PREFIX)


class HealthApp:
    """``/healthz`` (the process runs), ``/readyz`` (every role here is ready) and ``/metrics``
    (this process's Prometheus registry, when given), nothing else."""

    def __init__(
        self, ready: Callable[[], bool], registry: CollectorRegistry | None = None
    ) -> None:
        self._ready = ready
        self._registry = registry

    async def __call__(self, scope: Scope, _receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == "/healthz":
            await _respond(send, 200, b"ok", b"text/plain")
        elif path == "/readyz":
            if self._ready():
                await _respond(send, 200, b"ok", b"text/plain")
            else:
                await _respond(send, 503, b"not ready", b"text/plain")
        elif path == "/metrics" and self._registry is not None:
            body = generate_latest(self._registry)
            await _respond(send, 200, body, CONTENT_TYPE_LATEST.encode())
        else:
            error = NotFound(f"no such path: {path}")
            await _respond(send, 404, orjson.dumps(error.to_status()), b"application/json")


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def listen(host: str, port: int) -> socket.socket:
    """Bind here rather than in uvicorn: a busy port becomes a clear error, and port 0 works.

    Raises OSError with the reason; the caller words it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    return listener


def url_of(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
