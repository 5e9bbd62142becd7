"""The request path's one shape: a ``Call`` flows through ``Stage``s to a terminal ``Handler``.

A stage is ``async def stage(call, call_next)``: it may refuse (raise ``GatewayError``), fill in
what it learned on the ``Call``, await ``call_next(call)`` and act after it (metering, audit).
A stage that must see or rewrite the response body (output guardrails) appends a
``ResponseHook`` to ``call.response_hooks``; the forwarding stage runs the hooks, in order, over
each chunk it relays. After ``call_next`` returns, ``call.usage`` holds the response's token
usage (exact when the upstream reported it) and ``call.upstream_status`` its status.
``compose`` binds a stage list to its terminal once, when the app is built, so the per-request
cost of a stage is one coroutine frame. Inference requests run
authenticate → read_json → resolve_endpoint → (extra stages) → forward.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from corral.gateway.routes import EndpointRoute, RouteTable
    from corral.identity import Principal
    from corral.observability import UsageReport

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

Handler = Callable[["Call"], Awaitable[None]]
Stage = Callable[["Call", Handler], Awaitable[None]]


OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
}
"""The GenAI operation name of each inference path."""


class ResponseHook(Protocol):
    """Sees (and may rewrite) a relayed response: the headers once, then every body chunk.

    ``chunk`` returns the bytes to send instead (``b""`` holds them back); ``end`` returns what
    is still held back when the upstream body ends. A hook that can change the body's length
    sets ``rewrites`` so the relayed response drops its ``content-length``.
    """

    rewrites: bool

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    def chunk(self, data: bytes) -> bytes: ...

    def end(self) -> bytes: ...


class Call:
    """One request on its way through the stages; each stage fills in what it establishes."""

    __slots__ = (
        "body",
        "cost_usd",
        "decided_by",
        "endpoint",
        "operation",
        "path",
        "payload",
        "principal",
        "receive",
        "response_hooks",
        "response_started",
        "routes",
        "scope",
        "send",
        "served_by",
        "stream",
        "token",
        "upstream_status",
        "usage",
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
        self.operation = OPERATIONS.get(path, "")
        self.decided_by: tuple[str, ...] = ()  # the Policies that decided (allow or deny)
        self.response_hooks: list[ResponseHook] = []
        self.upstream_status: int | None = None  # of the answer relayed to the client
        self.served_by: str | None = None  # the replica address that answered
        self.usage: UsageReport | None = None  # set once a relayed response has ended
        self.cost_usd: float | None = None  # set by metering when the Endpoint has a price

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
