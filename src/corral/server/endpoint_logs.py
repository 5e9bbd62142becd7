"""``GET .../namespaces/{ns}/endpoints/{name}/logs?tail=N``: the last lines of each replica's log.

Served by the process that runs the controllers role, because the logs are its model servers'
files (``STATE_DIR/logs/``); ``corral up`` mounts it on its one port, before the API server.
The answer is ``{"replicas": [{"name", "model", "lines": [...]}]}`` with one entry per replica
the Endpoint's status lists or this process's supervisor runs, by name; a replica that has
written nothing yet has empty ``lines``. Errors are Kubernetes ``Status`` bodies, like the API
server's: 401 without the admin token, 404 when the Endpoint does not exist, 400 for a bad
``tail``, 405 for anything but GET.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import orjson

from corral.api.errors import ApiError, BadRequest, NotFound, Unauthorized
from corral.api.kinds.endpoint import ENDPOINT
from corral.runtimes import Supervisor
from corral.server.http import LOGS_PREFIX, Receive, Scope, Send
from corral.store.protocol import Store

DEFAULT_TAIL = 100
MAX_TAIL = 10_000
_PATH = re.compile(
    "^" + re.escape(LOGS_PREFIX) + r"(?P<namespace>[^/]+)/endpoints/(?P<name>[^/]+)/logs$"
)


class _MethodNotAllowed(ApiError):
    reason = "MethodNotAllowed"
    code = 405


class EndpointLogs:
    """The raw ASGI app for the logs route; ``authenticate`` checks the bearer token."""

    def __init__(
        self, store: Store, supervisor: Supervisor, authenticate: Callable[[str | None], bool]
    ) -> None:
        self._store = store
        self._supervisor = supervisor
        self._authenticate = authenticate

    async def __call__(self, scope: Scope, _receive: Receive, send: Send) -> None:
        try:
            body = await self._answer(scope)
        except ApiError as error:
            headers = [(b"allow", b"GET")] if error.code == 405 else []
            if error.code == 401:
                headers = [(b"www-authenticate", b'Bearer realm="corral"')]
            await _respond(send, error.code, orjson.dumps(error.to_status()), headers)
            return
        await _respond(send, 200, body)

    async def _answer(self, scope: Scope) -> bytes:
        if not self._authenticate(_bearer_token(scope)):
            raise Unauthorized("authentication required: send 'Authorization: Bearer <token>'")
        match = _PATH.match(scope["path"])
        if match is None:
            raise NotFound(f"no such path: {scope['path']}")
        if scope["method"] != "GET":
            raise _MethodNotAllowed(f"{scope['method']} is not allowed here; allowed: GET")
        tail = _tail(scope.get("query_string", b""))
        namespace, name = match["namespace"], match["name"]
        endpoint = await self._store.get(ENDPOINT.kind, namespace, name)  # NotFound: 404
        replicas: dict[str, str] = {}
        for entry in (endpoint.get("status") or {}).get("replicas") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                replicas[entry["name"]] = str(entry.get("model") or "")
        for status in self._supervisor.statuses():
            if status.namespace == namespace and status.endpoint == name:
                replicas[status.name] = status.model
        entries = await asyncio.to_thread(self._read_tails, replicas, tail)
        return orjson.dumps({"replicas": entries})

    def _read_tails(self, replicas: dict[str, str], tail: int) -> list[dict[str, Any]]:
        entries = []
        for name in sorted(replicas):
            try:
                lines = self._supervisor.tail_logs(name, tail)
            except ValueError:
                lines = []  # a name no replica could have (hand-written status): no log file
            entries.append({"name": name, "model": replicas[name], "lines": lines})
        return entries


def _tail(query_string: bytes) -> int:
    values = parse_qs(query_string.decode("latin-1"), keep_blank_values=True).get("tail")
    if not values:
        return DEFAULT_TAIL
    text = values[-1]
    if not text.isdigit() or not 0 <= int(text) <= MAX_TAIL:
        raise BadRequest(f"tail: must be a whole number 0..{MAX_TAIL} (got {text!r})")
    return int(text)


def _bearer_token(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"authorization":
            scheme, _, credentials = bytes(value).decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
            return None
    return None


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
