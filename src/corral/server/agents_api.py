"""The sessions API: an agent's durable sessions over HTTP, beside the gateway under ``/v1``.

Routes (callers authenticate as at the gateway: an API key, a workload JWT or the admin token):

- ``POST /v1/agents/{ns}/{agent}/sessions`` ``{"message"?: str}`` → 201 ``{"id", "state"}``; a
  message starts the first turn at once (follow it with ``GET``, or post the first message to
  ``…/messages`` instead to stream it);
- ``GET /v1/agents/{ns}/{agent}/sessions?limit=&after=&state=`` → ``{"items", "next"}``, newest
  first (keyset pages);
- ``GET …/sessions/{id}`` → ``{"session", "events"}``: the state and the whole journal;
- ``POST …/sessions/{id}/messages`` ``{"message": str}`` → the turn as server-sent events
  (``step_started``, ``model_delta``, ``tool_call``, ``approval_needed``, ``tool_result``,
  ``final``, ``error``, ``state``) until the session waits or ends;
- ``POST …/sessions/{id}/approvals/{step}`` ``{"approve": bool, "reason"?: str}`` → the resumed
  turn, streamed the same way;
- ``DELETE …/sessions/{id}`` → ``{"id", "state"}`` (terminated).

With ``?stream=false`` the two turn-running routes answer once the turn is over, with the
session as ``GET`` shows it. A session belongs to the caller that created it: another caller
(but the admin) gets 404, as for a session that does not exist. Errors have the gateway's
OpenAI shape: ``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any, Protocol

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from corral.agents.errors import SessionStateError, UnknownAgent, UnknownSession
from corral.agents.events import StreamEvent
from corral.agents.runtime import SessionSummary, SessionView
from corral.agents.stream import Subscription
from corral.identity import Principal

_log = logging.getLogger(__name__)

AGENTS_PREFIX = "/v1/agents/"
HEARTBEAT_S = 15.0
"""An SSE comment this often while a turn waits (a slow tool), so proxies keep the stream."""
MAX_BODY_BYTES = 1024 * 1024
ADMIN = "admin"
"""The session owner recorded when the admin token creates a session."""

Authenticate = Callable[[str | None], "Principal | bool | None"]
"""(bearer token or None) -> the caller, True for the admin, None for no one; raises
:class:`Unauthenticated` when the credential fails a check worth naming (an expired JWT)."""
Authorize = Callable[["Principal | None", str, str], "str | None"]
"""(caller or None for the admin, namespace, agent) -> why not, or None when allowed."""


class Sessions(Protocol):
    """What the API needs of :class:`corral.agents.runtime.AgentRuntime`."""

    async def create_session(
        self, namespace: str, agent: str, *, message: str | None = None, user: str | None = None
    ) -> str: ...
    async def send_message(self, session_id: str, text: str) -> None: ...
    async def decide_approval(
        self, session_id: str, step: int, approve: bool, reason: str = "", *, by: str | None = None
    ) -> None: ...
    async def terminate(self, session_id: str, reason: str = ...) -> str: ...
    def subscribe(self, session_id: str) -> Subscription: ...
    async def wait(self, session_id: str, *, seconds: float = ...) -> str: ...
    async def get(self, session_id: str) -> SessionView: ...
    async def list_sessions(
        self,
        namespace: str,
        agent: str,
        *,
        limit: int = 100,
        after: str | None = None,
        state: str | None = None,
    ) -> tuple[list[SessionSummary], str | None]: ...


class Unauthenticated(Exception):
    """A bearer credential that failed verification; the message says which check and why
    (``invalid workload token (expired): …``), as the gateway's 401 does."""


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind

    def response(self) -> Response:
        body = {
            "error": {"message": self.message, "type": self.kind, "param": None, "code": self.code}
        }
        # A 401 names the scheme it wants (RFC 6750), as the gateway's do.
        headers = {"www-authenticate": "Bearer"} if self.status == 401 else None
        return Response(
            orjson.dumps(body), self.status, headers=headers, media_type="application/json"
        )


def unauthenticated(message: str) -> ApiError:
    """The 401 the gateway would answer: OpenAI-shaped, ``invalid_api_key``, saying why."""
    return ApiError(401, message, "invalid_api_key", "authentication_error")


class SessionsApi:
    """The Starlette app serving the routes above over one runtime."""

    def __init__(
        self,
        sessions: Callable[[], Sessions | None],
        authenticate: Authenticate,
        authorize: Authorize,
        *,
        turn_timeout_s: float = 600.0,
    ) -> None:
        self._sessions = sessions
        self._authenticate = authenticate
        self._authorize = authorize
        self._turn_timeout_s = turn_timeout_s
        base = "/v1/agents/{namespace}/{agent}/sessions"
        self.app = Starlette(
            routes=[
                Route(base, self._create, methods=["POST"]),
                Route(base, self._list, methods=["GET"]),
                Route(base + "/{session}", self._get, methods=["GET"]),
                Route(base + "/{session}", self._delete, methods=["DELETE"]),
                Route(base + "/{session}/messages", self._message, methods=["POST"]),
                Route(base + "/{session}/approvals/{step:int}", self._approval, methods=["POST"]),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    # -- routes ----------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        return await self._guard(request, self._do_create)

    async def _do_create(self, request: Request, ctx: _Context) -> Response:
        body = await _body(request)
        message = body.get("message")
        if message is not None and (not isinstance(message, str) or not message.strip()):
            raise ApiError(400, "'message' must be a non-empty string", "invalid_message")
        session_id = await ctx.sessions.create_session(
            ctx.namespace, ctx.agent, message=message, user=ctx.owner
        )
        state = "active" if message is not None else "waiting_input"
        return _json({"id": session_id, "state": state}, 201)

    async def _list(self, request: Request) -> Response:
        return await self._guard(request, self._do_list)

    async def _do_list(self, request: Request, ctx: _Context) -> Response:
        query = request.query_params
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            raise ApiError(400, "'limit' must be an integer 1..500", "invalid_limit") from None
        if not 1 <= limit <= 500:
            raise ApiError(400, "'limit' must be an integer 1..500", "invalid_limit")
        items, cursor = await ctx.sessions.list_sessions(
            ctx.namespace,
            ctx.agent,
            limit=limit,
            after=query.get("after") or None,
            state=query.get("state") or None,
        )
        if ctx.principal is not None:
            mine = [item for item in items if await self._owner(ctx, item.id) == ctx.owner]
            items = mine
        return _json({"items": [asdict(item) for item in items], "next": cursor})

    async def _get(self, request: Request) -> Response:
        return await self._guard(request, self._do_get)

    async def _do_get(self, request: Request, ctx: _Context) -> Response:
        view = await self._view(ctx, request.path_params["session"])
        return _json({"session": asdict(view.session), "events": view.events})

    async def _delete(self, request: Request) -> Response:
        return await self._guard(request, self._do_delete)

    async def _do_delete(self, request: Request, ctx: _Context) -> Response:
        session_id = request.path_params["session"]
        await self._view(ctx, session_id)
        state = await ctx.sessions.terminate(session_id, f"terminated by {ctx.owner}")
        return _json({"id": session_id, "state": state})

    async def _message(self, request: Request) -> Response:
        return await self._guard(request, self._do_message)

    async def _do_message(self, request: Request, ctx: _Context) -> Response:
        session_id = request.path_params["session"]
        body = await _body(request)
        message = body.get("message")
        if not isinstance(message, str) or not message.strip():
            raise ApiError(400, "'message' must be a non-empty string", "invalid_message")
        await self._view(ctx, session_id)
        return await self._turn(
            request, ctx, session_id, lambda: ctx.sessions.send_message(session_id, message)
        )

    async def _approval(self, request: Request) -> Response:
        return await self._guard(request, self._do_approval)

    async def _do_approval(self, request: Request, ctx: _Context) -> Response:
        session_id, step = request.path_params["session"], request.path_params["step"]
        body = await _body(request)
        approve, reason = body.get("approve"), body.get("reason", "")
        if not isinstance(approve, bool):
            raise ApiError(400, "'approve' must be true or false", "invalid_approval")
        if not isinstance(reason, str):
            raise ApiError(400, "'reason' must be a string", "invalid_approval")
        await self._view(ctx, session_id)
        return await self._turn(
            request,
            ctx,
            session_id,
            lambda: ctx.sessions.decide_approval(session_id, step, approve, reason, by=ctx.owner),
        )

    # -- helpers ---------------------------------------------------------------------------

    async def _turn(
        self,
        request: Request,
        ctx: _Context,
        session_id: str,
        start: Callable[[], Any],
    ) -> Response:
        """Run a turn and stream it (or wait for it with ``?stream=false``)."""
        stream = request.query_params.get("stream", "true").lower() not in ("false", "0", "no")
        subscription = ctx.sessions.subscribe(session_id)  # before the turn starts: no gaps
        try:
            await start()
        except BaseException:
            subscription.close()
            raise
        if not stream:
            subscription.close()
            with contextlib.suppress(TimeoutError):
                await ctx.sessions.wait(session_id, seconds=self._turn_timeout_s)
            view = await ctx.sessions.get(session_id)
            return _json({"session": asdict(view.session), "events": view.events})
        return StreamingResponse(
            _sse(subscription),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def _view(self, ctx: _Context, session_id: str) -> SessionView:
        """The session, when it is this agent's and the caller's; else 404."""
        try:
            view = await ctx.sessions.get(session_id)
        except UnknownSession:
            raise _no_session(session_id) from None
        session = view.session
        if (session.namespace, session.agent) != (ctx.namespace, ctx.agent):
            raise _no_session(session_id)
        if ctx.principal is not None and _owner_of(view) != ctx.owner:
            raise _no_session(session_id)
        return view

    async def _owner(self, ctx: _Context, session_id: str) -> str | None:
        try:
            return _owner_of(await ctx.sessions.get(session_id))
        except UnknownSession:
            return None

    async def _guard(
        self, request: Request, handler: Callable[[Request, _Context], Any]
    ) -> Response:
        """Authenticate, authorize and turn the runtime's errors into HTTP answers."""
        try:
            ctx = self._context(request)
            response: Response = await handler(request, ctx)
            return response
        except ApiError as error:
            return error.response()
        except UnknownAgent as error:
            return ApiError(404, str(error), "agent_not_found").response()
        except UnknownSession as error:
            return ApiError(404, str(error), "session_not_found").response()
        except SessionStateError as error:
            return ApiError(409, str(error), "session_state_conflict").response()

    def _context(self, request: Request) -> _Context:
        header = request.headers.get("authorization")
        token = None
        if header is not None:
            scheme, _, credentials = header.partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                token = credentials.strip()
        try:
            accepted = self._authenticate(token)
        except Unauthenticated as error:
            raise unauthenticated(str(error)) from None
        if not accepted:
            raise unauthenticated(
                "missing API key: send the header 'Authorization: Bearer <token>'"
                if token is None
                else "invalid API key in the Authorization header"
            )
        principal = accepted if isinstance(accepted, Principal) else None
        namespace, agent = request.path_params["namespace"], request.path_params["agent"]
        refusal = self._authorize(principal, namespace, agent)
        if refusal is not None:
            raise ApiError(403, refusal, "permission_denied", "permission_error")
        sessions = self._sessions()
        if sessions is None:
            raise ApiError(503, "the agent runtime is starting", "not_ready", "server_error")
        owner = principal.id if principal is not None else ADMIN
        return _Context(sessions, namespace, agent, principal, owner)


class _Context:
    __slots__ = ("agent", "namespace", "owner", "principal", "sessions")

    def __init__(
        self,
        sessions: Sessions,
        namespace: str,
        agent: str,
        principal: Principal | None,
        owner: str,
    ) -> None:
        self.sessions, self.namespace, self.agent = sessions, namespace, agent
        self.principal, self.owner = principal, owner


def _owner_of(view: SessionView) -> str | None:
    for event in view.events:
        if event.get("kind") == "session_created":
            user = event.get("user")
            return user if isinstance(user, str) else None
    return None


def _no_session(session_id: str) -> ApiError:
    return ApiError(404, f"no session {session_id} of this agent", "session_not_found")


async def _body(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes", "body_too_large")
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ApiError(400, f"request body is not valid JSON: {error}", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object", "invalid_json")
    return body


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def sse_frame(event: StreamEvent) -> bytes:
    """One server-sent event: the event type as its name, a JSON body with the session id and
    step beside the event's own fields."""
    data: dict[str, Any] = {"session": event.session_id, **event.data}
    if event.step is not None:
        data["step"] = event.step
    return b"event: " + event.type.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _sse(subscription: Subscription) -> AsyncIterator[bytes]:
    events = aiter(subscription)
    try:
        while True:
            try:
                event = await asyncio.wait_for(anext(events), HEARTBEAT_S)
            except TimeoutError:
                yield b": still working\n\n"
                continue
            except StopAsyncIteration:
                return
            yield sse_frame(event)
    finally:
        subscription.close()
