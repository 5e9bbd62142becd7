"""``?watch=1`` on a list path: the store's watch as a stream of JSON lines.

Each line is ``{"type": "ADDED|MODIFIED|DELETED", "object": {...}}``. Without a
``resourceVersion`` (or with ``"0"``) the stream opens with an ADDED line per existing object
and then follows changes, as Kubernetes does; with one it replays what came after it. A version
older than the store retains ends the stream with an ``ERROR`` line carrying the Gone Status,
after which the client relists. The stream ends when the client disconnects, after
``timeoutSeconds``, or at an error, and always closes the store's watch on the way out.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from corral.api.errors import ApiError, BadRequest
from corral.api.objects import Object
from corral.apiserver.paths import ResourcePath
from corral.apiserver.wire import InternalError
from corral.store.protocol import Store, WatchEvent

WATCH_MEDIA_TYPE = "application/json;stream=watch"

_log = logging.getLogger(__name__)


def is_watch_request(request: Request) -> bool:
    raw = request.query_params.get("watch")
    if raw is None:
        return False
    value = raw.lower()
    if value in ("1", "true"):
        return True
    if value in ("", "0", "false"):
        return False
    raise BadRequest(f"query parameter watch={raw!r}: expected 1, true, 0 or false")


async def watch_response(store: Store, request: Request, path: ResourcePath) -> Response:
    """Check the parameters and read the initial state, then stream.

    Everything that can fail on bad input happens before the response starts, so those
    failures are ordinary Status replies rather than ERROR lines.
    """
    query = request.query_params
    since = _resource_version_param(query.get("resourceVersion"))
    selector = query.get("labelSelector") or None
    timeout = _timeout_param(query.get("timeoutSeconds"))
    initial: list[Object] = []
    if since is None:
        listed = await store.list(path.info.kind, path.namespace, label_selector=selector)
        initial, since = listed.items, listed.resource_version
    elif selector is not None:
        # The store checks a watch's selector lazily; a list checks it now.
        await store.list(path.info.kind, path.namespace, label_selector=selector, limit=1)
    events = store.watch(
        path.info.kind, path.namespace, resource_version=since, label_selector=selector
    )
    return WatchStream(initial, events, timeout)


class WatchStream(Response):
    """A streaming response that also listens for the client going away."""

    media_type = WATCH_MEDIA_TYPE

    def __init__(
        self, initial: list[Object], events: AsyncIterator[WatchEvent], timeout: float | None
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache"})
        self._initial = initial
        self._events = events
        self._timeout = timeout

    async def __call__(self, _scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async with anyio.create_task_group() as tasks:

                async def stream() -> None:
                    with anyio.move_on_after(self._timeout):
                        async with aclosing(self._lines()) as lines:
                            async for line in lines:
                                await send(
                                    {"type": "http.response.body", "body": line, "more_body": True}
                                )
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    tasks.cancel_scope.cancel()

                async def until_disconnected() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        continue
                    tasks.cancel_scope.cancel()

                tasks.start_soon(stream)
                tasks.start_soon(until_disconnected)
        finally:
            closer = getattr(self._events, "aclose", None)
            if closer is not None:
                # Shielded: the stream is usually being cancelled when this runs, and the store
                # must still get to release its subscription.
                with anyio.CancelScope(shield=True):
                    await closer()

    async def _lines(self) -> AsyncGenerator[bytes, None]:
        for obj in self._initial:
            yield _line("ADDED", obj)
        try:
            async for event in self._events:
                yield _line(event.type, event.object)
        except ApiError as error:
            yield _line("ERROR", error.to_status())
        except Exception:
            _log.exception("a watch failed")
            yield _line(
                "ERROR", InternalError("the watch failed; relist and watch again").to_status()
            )


def _line(event_type: str, obj: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": event_type, "object": obj}, option=orjson.OPT_APPEND_NEWLINE)


def _resource_version_param(raw: str | None) -> int | None:
    if raw is None or raw in ("", "0"):
        return None
    if not raw.isdigit():
        raise BadRequest(
            f"query parameter resourceVersion={raw!r}: expected a non-negative integer"
        )
    return int(raw)


def _timeout_param(raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise BadRequest(f"query parameter timeoutSeconds={raw!r}: expected a positive integer")
    return float(raw)
