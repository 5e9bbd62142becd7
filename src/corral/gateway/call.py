"""The request path's one shape: a ``Call`` flows through ``Stage``s to a terminal ``Handler``.

A stage is ``async def stage(call, call_next)``: it may refuse (raise ``GatewayError``), fill in
what it learned on the ``Call``, await ``call_next(call)`` and act after it (metering, audit).
``compose`` binds a stage list to its terminal once, when the app is built, so the per-request
cost of a stage is one coroutine frame. Inference requests run
authenticate → read_json → resolve_endpoint → (extra stages) → forward.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.gateway.routes import EndpointRoute, RouteTable
    from corral.identity import Principal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

Handler = Callable[["Call"], Awaitable[None]]
Stage = Callable[["Call", Handler], Awaitable[None]]


class Call:
    """One request on its way through the stages; each stage fills in what it establishes."""

    __slots__ = (
        "body",
        "endpoint",
        "path",
        "payload",
        "principal",
        "receive",
        "response_started",
        "routes",
        "scope",
        "send",
        "stream",
        "token",
    )

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, path: str, routes: RouteTable
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.path = path  # below the mount point: "/v1/chat/completions"
        self.routes = routes  # the snapshot this request uses from start to end
        self.token: str | None = None
        self.principal: Principal | None = None  # set when authentication names the caller
        self.body = b""
        self.payload: dict[str, Any] = {}
        self.stream = False
        self.endpoint: EndpointRoute | None = None
        self.response_started = False

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.scope["headers"]:
            if key == name:
                return bytes(value)
        return None


def compose(stages: Sequence[Stage], terminal: Handler) -> Handler:
    handler = terminal
    for stage in reversed(stages):
        handler = _bind(stage, handler)
    return handler


def _bind(stage: Stage, call_next: Handler) -> Handler:
    # A plain function returning the stage's coroutine: no extra coroutine frame per stage.
    def bound(call: Call) -> Awaitable[None]:
        return stage(call, call_next)

    return bound
