"""The agents extension: the durable session runtime of a process with the ``agents`` role.

It composes ``corral.agents`` with the rest of the server:

- the session journal: ``CORRAL_SESSIONS_URL`` when set, else the store's PostgreSQL database
  (every agents worker on it shares the sessions; a dead worker's are resumed by another), else
  ``STATE_DIR/sessions.db`` (SQLite, this process alone);
- the directory of Agents and Tools, followed from the store (``agent_directory``);
- model calls through the gateway as the agent (``agents_model``): this process's own listener
  when it runs the gateway role, else ``CORRAL_GATEWAY_URL``;
- per-session workload tokens (``corral.agents.authority``) from the workload-identity
  extension's issuer, and a Cedar decision for every tool call (``authority_gate``), audited;
- tool calls: ``agent:`` tools over A2A in process, the others through the MCP tool caller
  (``corral.agents.mcp_client``);
- HTTP: the sessions API and each agent's A2A card and endpoint under ``/v1/agents/``,
  ``GET /v1/discovery``, and, in a process that also runs the gateway, ``model: "agent:NAME"``.

Who may use an agent is a Cedar decision, ``Action::"invoke"`` on
``Agent::"spiffe://corral.local/ns/<ns>/agent/<name>"`` (the admin token may always).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from corral.agents.a2a import A2AEndpoint, agent_audience, agent_card, card_json
from corral.agents.a2a_tools import A2AToolCaller, RuntimeSessions
from corral.agents.authority import SessionCredentials
from corral.agents.authority_gate import PolicyToolGate
from corral.agents.config import ToolBinding
from corral.agents.discovery import discovery_document
from corral.agents.mcp_client import McpToolCaller
from corral.agents.runtime import AgentRuntime
from corral.agents.seams import SessionInfo, ToolCaller
from corral.api.kinds.agent import AGENT
from corral.api.kinds.tool import TOOL
from corral.audit import AuditEvent
from corral.controllers.tool import store_tool_configs
from corral.gateway import GatewayError, Stage
from corral.identity import InvalidToken, Principal, workload_id
from corral.policy.entities import Entity, invoke_context, object_entity
from corral.policy.tool_calls import ToolCallDecision
from corral.server.access_feed import ADMIN_PRINCIPAL, AccessFeed
from corral.server.agent_directory import AgentDirectoryFeed
from corral.server.agents_api import (
    ApiError,
    Authenticate,
    SessionsApi,
    Unauthenticated,
    unauthenticated,
)
from corral.server.agents_model import GatewayModelCaller
from corral.server.agents_openai import agent_model_stage
from corral.server.config import AGENTS, CONTROLLERS, GATEWAY, is_postgres_url, redact_url
from corral.server.extensions import Extension, ServerContext
from corral.server.http import App
from corral.store.session_journal import open_session_journal

_log = logging.getLogger("corral.agents")

SESSIONS_URL_ENV = "CORRAL_SESSIONS_URL"
GATEWAY_URL_ENV = "CORRAL_GATEWAY_URL"
SQLITE_FILE = "sessions.db"
TOOL_LOGS_DIR = "tool-logs"
"""Under the state dir: stdio MCP servers' stderr (``corral.server.serve`` uses the same)."""
TRUST_DOMAIN = "corral.local"
DISCOVERY_PATH = "/v1/discovery"


class AgentsExtension(Extension):
    name = "agents"

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        self._active = AGENTS in context.config.roles
        self.runtime: AgentRuntime | None = None
        self.directory: AgentDirectoryFeed | None = None
        self._access: AccessFeed | None = None
        self._journal: Any = None
        self._model: GatewayModelCaller | None = None
        self._sessions = RuntimeSessions()
        self._a2a = A2AEndpoint(self._sessions)
        self._tasks: list[asyncio.Task[None]] = []
        self.mcp_tools: ToolCaller | None = None
        """The MCP tool caller (by default one of its own, opened at ``start``)."""
        self._own_mcp: McpToolCaller | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if not self._active:
            return
        context = self.context
        access = context.access
        if access is None:  # an agents-only process: follow keys and policies itself
            if context.admin_check is None:
                raise RuntimeError("the agents extension needs the admin check")
            access = AccessFeed(context.store, context.admin_check)
            self._tasks.append(asyncio.create_task(access.start(context.stop)))
        self._access = access
        url = sessions_url(context)
        self._journal = await open_session_journal(url)
        _log.info("agent sessions journaled at %s", redact_url(url))
        self.directory = AgentDirectoryFeed(context.store)
        self._tasks.append(asyncio.create_task(self.directory.start(context.stop)))
        self._model = GatewayModelCaller(gateway_url(context))
        workload = context.workload
        if workload is None:
            raise RuntimeError("the agents extension needs the workload-identity extension")
        if self.mcp_tools is None:
            # The process's MCP connections, Tools and Secrets read from the store when a call
            # needs them. With the controllers role the Tool controller is handed these same
            # connections (``shared_mcp``), so one server per Tool runs, its stderr where the
            # controller's goes.
            logs = context.state_dir / TOOL_LOGS_DIR
            self._own_mcp = McpToolCaller(
                logs if CONTROLLERS in context.config.roles else logs / "agents",
                resolve=store_tool_configs(context.store),
            )
            self.mcp_tools = self._own_mcp
        tools = A2AToolCaller(self._a2a, self._verify, self.mcp_tools)
        gate = PolicyToolGate(
            lambda: access.engine.snapshot,
            self._tool_entity,
            trust_domain=TRUST_DOMAIN,
            on_decision=self._audit_tool_call,
        )
        self.runtime = AgentRuntime(
            self._journal,
            self.directory,
            self._model,
            tools,
            tokens=SessionCredentials(lambda: workload.issuer, trust_domain=TRUST_DOMAIN),
            gate=gate,
        )
        self._sessions.runtime = self.runtime
        await self.runtime.start()

    @property
    def shared_mcp(self) -> McpToolCaller | None:
        """The MCP connections this process's agents call tools through (after ``start``), for
        the Tool controller of the same process to list through: one server per Tool."""
        return self._own_mcp

    @property
    def ready(self) -> bool:
        if not self._active:
            return True
        return (
            self.directory is not None
            and self.directory.ready
            and self._access is not None
            and self._access.ready
        )

    async def aclose(self) -> None:
        if self.runtime is not None:
            await self.runtime.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._model is not None:
            await self._model.aclose()
        if self._own_mcp is not None:
            await self._own_mcp.close()
        if self._journal is not None:
            await self._journal.close()

    # -- HTTP --------------------------------------------------------------------------------

    def surface_apps(self) -> Sequence[tuple[str, App]]:
        if not self._active:
            return ()
        sessions = SessionsApi(lambda: self.runtime, self._authenticate, self.authorize)
        extra = Starlette(
            routes=[
                Route(
                    "/v1/agents/{namespace}/{agent}/.well-known/agent-card.json",
                    self._card,
                    methods=["GET"],
                ),
                Route("/v1/agents/{namespace}/{agent}/a2a", self._a2a_route, methods=["POST"]),
                Route(DISCOVERY_PATH, self._discovery, methods=["GET"]),
            ]
        )

        async def agents_app(scope: Any, receive: Any, send: Any) -> None:
            path: str = scope["path"]
            if path.endswith(("/agent-card.json", "/a2a")) or path == DISCOVERY_PATH:
                await extra(scope, receive, send)
            else:
                await sessions(scope, receive, send)

        return (("/v1/agents/", agents_app), (DISCOVERY_PATH, agents_app))

    def route_stages(self) -> Sequence[Stage]:
        if not self._active or GATEWAY not in self.context.config.roles:
            return ()
        return (agent_model_stage(lambda: self.runtime, self.authorize),)

    def _authenticate(self, token: str | None) -> Principal | bool | None:
        return bearer_authenticator(lambda: self._access)(token)

    def authorize(self, principal: Principal | None, namespace: str, agent: str) -> str | None:
        """Why ``principal`` may not use the agent, or None (Cedar ``invoke`` on the Agent)."""
        if principal is None or principal is ADMIN_PRINCIPAL:
            return None
        access = self._access
        if access is None:
            return "the agent runtime is starting"
        agent_id = workload_id(TRUST_DOMAIN, namespace, agent)
        resource = Entity(
            "Agent",
            agent_id,
            {"name": agent, "namespace": namespace, "act": []},
            (("Namespace", namespace),),
        )
        context = invoke_context(
            model=f"agent:{namespace}/{agent}", estimated_tokens=0, now=datetime.now(UTC)
        )
        decision = access.engine.decide(
            access.principal_entity(principal), "invoke", resource, context
        )
        if decision.allowed:
            return None
        if decision.policies:
            return (
                f"{principal.id} may not use agent {namespace}/{agent}: forbidden by "
                + ", ".join(decision.policies)
            )
        return (
            f"{principal.id} may not use agent {namespace}/{agent}: no Policy permits "
            f'Action::"invoke" on Agent::"{agent_id}"'
        )

    async def _card(self, request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["agent"]
        directory = self.directory
        config = directory.get(namespace, name) if directory is not None else None
        if config is None:
            return ApiError(
                404, f"agent {namespace}/{name} not found", "agent_not_found"
            ).response()
        base = str(request.base_url).rstrip("/")
        card = agent_card(config, base_url=base)
        return _json(card_json(card))

    async def _a2a_route(self, request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["agent"]
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            message = "missing workload token: send the header 'Authorization: Bearer <JWT>'"
            return unauthenticated(message).response()
        try:
            caller = self._verify(token.strip(), agent_audience(namespace, name))
        except InvalidToken as error:
            reason = error.message.removeprefix("invalid token: ")
            message = f"invalid workload token ({error.problem}): {reason}"
            return unauthenticated(message).response()
        except Exception as error:
            return unauthenticated(f"invalid workload token: {error}").response()
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        return _json(await self._a2a.handle(namespace, name, body, caller))

    async def _discovery(self, request: Request) -> Response:
        token = _bearer(request)
        try:
            accepted = self._authenticate(token)
        except Unauthenticated as error:
            return unauthenticated(str(error)).response()
        if not accepted:
            return unauthenticated(
                "missing API key: send the header 'Authorization: Bearer <token>'"
                if token is None
                else "invalid API key in the Authorization header"
            ).response()
        directory = self.directory
        if directory is None:
            return ApiError(
                503, "the agent runtime is starting", "not_ready", "server_error"
            ).response()
        query = request.query_params
        try:
            document = discovery_document(
                directory.objects(AGENT.kind),
                directory.objects(TOOL.kind),
                capability=query.get("capability") or None,
                labels=query.get("labelSelector") or "",
                namespace=query.get("namespace") or None,
            )
        except ValueError as error:
            return ApiError(400, str(error), "invalid_query").response()
        return _json(document)

    # -- seams -------------------------------------------------------------------------------

    def _verify(self, token: str, audience: str) -> Principal:
        workload = self.context.workload
        if workload is None:
            raise RuntimeError("no workload identity in this process")
        return workload.verifier(audience).verify(token).principal

    def _tool_entity(self, namespace: str, name: str) -> Entity | None:
        directory = self.directory
        obj = directory.tool_object(namespace, name) if directory is not None else None
        return object_entity(obj) if obj is not None else None

    def _audit_tool_call(
        self, session: SessionInfo, binding: ToolBinding, decision: ToolCallDecision
    ) -> None:
        sink = self.context.audit
        if sink is None:
            return
        agent = workload_id(TRUST_DOMAIN, session.namespace, session.agent)
        sink.record(
            AuditEvent(
                actor=agent,
                action="tool.call",
                resource=f"Tool/{binding.tool}",
                decision=decision.effect,
                policies=decision.policies,
                details={
                    "session": session.id,
                    "function": binding.function,
                    "tool": binding.name,
                    "risk": binding.risk,
                    "user": session.user,
                },
            )
        )


def bearer_authenticator(access: Callable[[], AccessFeed | None]) -> Authenticate:
    """How the sessions API, A2A cards and discovery know their callers: as the gateway does
    (the admin token, a workload JWT, an API key), with a refused JWT's reason kept for the
    401 (``invalid workload token (expired): …``) instead of a bare "invalid key"."""

    def authenticate(token: str | None) -> Principal | bool | None:
        feed = access()
        if feed is None:
            return None
        try:
            principal = feed.authenticate(token)
        except GatewayError as error:
            if error.status == 401:
                raise Unauthenticated(error.message) from None
            return None
        return True if principal is ADMIN_PRINCIPAL else principal

    return authenticate


def sessions_url(context: ServerContext) -> str:
    configured = os.environ.get(SESSIONS_URL_ENV, "").strip()
    if configured:
        return configured
    if is_postgres_url(context.store_url):
        return context.store_url
    return f"sqlite:///{(context.state_dir / SQLITE_FILE).resolve()}"


def gateway_url(context: ServerContext) -> str:
    configured = os.environ.get(GATEWAY_URL_ENV, "").strip()
    if configured:
        return configured
    if GATEWAY in context.config.roles and context.listen_url:
        return context.listen_url
    raise ValueError(
        f"an agents process without the gateway role needs {GATEWAY_URL_ENV}=http://host:port "
        "(where a gateway of this deployment listens)"
    )


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")
