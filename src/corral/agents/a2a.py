"""A2A: an agent card per Agent and the JSON-RPC endpoint that lets one agent call another.

Where it sits: the server mounts ``GET /v1/agents/{ns}/{name}/.well-known/agent-card.json``
(:func:`agent_card`) and ``POST /v1/agents/{ns}/{name}/a2a`` (:class:`A2AEndpoint`) after
verifying the caller's workload token for the audience :func:`agent_audience` (the callee's
SPIFFE id); an agent calls another in-process through :class:`A2AToolCaller` (see
``corral.agents.a2a_tools``). Cards and messages are the ``a2a-sdk`` types (A2A 1.0, protobuf);
``message/send`` (A2A 0.3) is accepted too and answered in 0.3's shape.

One A2A *context* is one corral session; each message is a *task*, ``<session id>/<turn>``.
A message with a ``contextId`` (or a ``taskId`` of that session) continues the session; one
without starts a new session whose delegation comes from the caller's token
(``corral.agents.authority.delegation_of``), so the callee's own tokens carry the whole chain.
Starting is idempotent on the ``messageId``: the same caller sending the same message id again
(a calling agent's tool step retried after a crash sends its idempotency key) gets the session
the first one started and its first turn's answer, not a second session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from a2a.compat.v0_3 import conversions as v03
from a2a.compat.v0_3 import types as types_v03
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    Artifact,
    HTTPAuthSecurityScheme,
    Message,
    Part,
    Role,
    SecurityRequirement,
    SecurityScheme,
    SendMessageRequest,
    SendMessageResponse,
    StringList,
    Task,
    TaskState,
    TaskStatus,
)
from google.protobuf import json_format  # type: ignore[import-untyped]  # no stubs pinned
from pydantic import ValidationError

from corral.agents.authority import Delegation, delegation_of
from corral.agents.config import AgentConfig
from corral.agents.errors import SessionStateError, UnknownAgent, UnknownSession
from corral.identity import Principal, workload_id

PROTOCOL_VERSION = "1.0"
LEGACY_PROTOCOL_VERSION = "0.3"
"""Served at the same URL: ``message/send`` requests are answered in 0.3's shape."""
CARD_PATH = "/v1/agents/{namespace}/{name}/.well-known/agent-card.json"
ENDPOINT_PATH = "/v1/agents/{namespace}/{name}/a2a"
SECURITY_SCHEME = "corral-workload-jwt"
TRUST_DOMAIN = "corral.local"
TEXT = "text/plain"

# JSON-RPC 2.0 and A2A error codes.
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
TASK_NOT_FOUND = -32001

_STATES: Mapping[str, TaskState] = {
    "active": TaskState.TASK_STATE_WORKING,
    "waiting_input": TaskState.TASK_STATE_COMPLETED,  # the turn is answered
    "waiting_approval": TaskState.TASK_STATE_INPUT_REQUIRED,  # a person must approve a tool
    "completed": TaskState.TASK_STATE_COMPLETED,
    "failed": TaskState.TASK_STATE_FAILED,
    "expired": TaskState.TASK_STATE_FAILED,
    "terminated": TaskState.TASK_STATE_CANCELED,
}


def agent_audience(namespace: str, name: str, trust_domain: str = TRUST_DOMAIN) -> str:
    """The audience a caller's token must carry at this agent's endpoint: its SPIFFE id."""
    return workload_id(trust_domain, namespace, name)


def agent_card(
    agent: AgentConfig,
    *,
    base_url: str,
    description: str = "",
    labels: Mapping[str, str] | None = None,
    version: str = "1",
) -> AgentCard:
    """The A2A card of ``agent``: one skill per tool function, the JSON-RPC interface and the
    bearer-JWT scheme. The instructions are never in it (they are the agent's own)."""
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    url = base_url.rstrip("/") + ENDPOINT_PATH.format(namespace=agent.namespace, name=agent.name)
    tags = [f"{key}={value}" for key, value in sorted((labels or {}).items())]
    skills = [
        AgentSkill(
            id=binding.function,
            name=binding.function,
            description=binding.description or f"{binding.name} on Tool {binding.tool}",
            tags=[f"risk={binding.risk}", f"tool={binding.tool}", *tags],
        )
        for binding in sorted(agent.tools.values(), key=lambda b: b.function)
    ] or [AgentSkill(id="chat", name="chat", description="answers messages", tags=tags)]
    audience = agent_audience(agent.namespace, agent.name)
    return AgentCard(
        name=f"{agent.namespace}/{agent.name}",
        description=description or f"corral agent {agent.namespace}/{agent.name}",
        version=version,
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version=version_)
            for version_ in (PROTOCOL_VERSION, LEGACY_PROTOCOL_VERSION)
        ],
        provider=AgentProvider(organization="corral", url=base_url),
        capabilities=AgentCapabilities(streaming=False, push_notifications=False),
        security_schemes={
            SECURITY_SCHEME: SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="Bearer",
                    bearer_format="JWT",
                    description=f"a corral workload token with audience {audience}",
                )
            )
        },
        security_requirements=[SecurityRequirement(schemes={SECURITY_SCHEME: StringList()})],
        default_input_modes=[TEXT],
        default_output_modes=[TEXT],
        skills=skills,
    )


def card_json(card: AgentCard) -> dict[str, Any]:
    """The card as the well-known URL serves it (A2A's JSON field names)."""
    return _to_dict(card)


@dataclass(frozen=True, slots=True)
class A2ATurn:
    """What one message did to a session: its state afterwards and the answer, if any."""

    session_id: str
    turn: int
    state: str
    text: str


class A2ASessions(Protocol):
    """The seam to the runtime: start or continue a session and wait for the turn's end."""

    async def send(
        self,
        namespace: str,
        agent: str,
        text: str,
        *,
        session_id: str | None,
        delegation: Delegation,
        message_id: str | None = None,
    ) -> A2ATurn: ...


class A2AEndpoint:
    """Answers A2A JSON-RPC requests (``SendMessage``; 0.3's ``message/send``)."""

    def __init__(self, sessions: A2ASessions) -> None:
        self._sessions = sessions

    async def handle(
        self, namespace: str, name: str, request: Any, caller: Principal
    ) -> dict[str, Any]:
        """The JSON-RPC response object for ``request`` (a decoded JSON body) from ``caller``
        (already verified for :func:`agent_audience`). Never raises for bad input."""
        request_id = request.get("id") if isinstance(request, Mapping) else None
        if not isinstance(request, Mapping) or request.get("jsonrpc") != "2.0":
            return _error(request_id, INVALID_REQUEST, "not a JSON-RPC 2.0 request object")
        method = request.get("method")
        try:
            if method == "SendMessage":
                message = _v1_message(request.get("params"))
                task = await self._send(namespace, name, message, caller)
                result = _to_dict(SendMessageResponse(task=task))
            elif method == "message/send":
                message = _v03_message(request)
                task = await self._send(namespace, name, message, caller)
                result = v03.to_compat_task(task).model_dump(
                    mode="json", by_alias=True, exclude_none=True
                )
            else:
                return _error(
                    request_id,
                    METHOD_NOT_FOUND,
                    f"method {method!r} is not served here (SendMessage, message/send)",
                )
        except _RpcError as error:
            return _error(request_id, error.code, error.message)
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    async def _send(self, namespace: str, name: str, message: Message, caller: Principal) -> Task:
        text = "\n".join(part.text for part in message.parts if part.text)
        if not text:
            raise _RpcError(INVALID_PARAMS, "params.message: needs at least one text part")
        if message.role == Role.ROLE_AGENT:
            raise _RpcError(INVALID_PARAMS, "params.message.role: must be the user's")
        session_id = message.context_id or message.task_id.partition("/")[0] or None
        try:
            delegation = delegation_of(caller)
            turn = await self._sessions.send(
                namespace,
                name,
                text,
                session_id=session_id,
                delegation=delegation,
                message_id=message.message_id or None,
            )
        except UnknownAgent:
            raise _RpcError(INVALID_PARAMS, f"no agent {namespace}/{name}") from None
        except UnknownSession:
            raise _RpcError(TASK_NOT_FOUND, f"no session {session_id} of this agent") from None
        except (SessionStateError, ValueError) as error:
            raise _RpcError(INVALID_PARAMS, str(error)) from None
        reply = Message(
            message_id=f"{turn.session_id}/{turn.turn}/reply",
            context_id=turn.session_id,
            task_id=f"{turn.session_id}/{turn.turn}",
            role=Role.ROLE_AGENT,
            parts=[Part(text=turn.text)] if turn.text else [],
        )
        return Task(
            id=f"{turn.session_id}/{turn.turn}",
            context_id=turn.session_id,
            status=TaskStatus(
                state=_STATES.get(turn.state, TaskState.TASK_STATE_WORKING), message=reply
            ),
            artifacts=[Artifact(artifact_id="answer", parts=[Part(text=turn.text)])]
            if turn.text
            else [],
            history=[message],
        )


class _RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _v1_message(params: Any) -> Message:
    if not isinstance(params, Mapping):
        raise _RpcError(INVALID_PARAMS, "params: expected an object with a message")
    request = SendMessageRequest()
    try:
        json_format.ParseDict(params, request)
    except json_format.ParseError as error:
        raise _RpcError(INVALID_PARAMS, f"params: {error}") from None
    if not request.HasField("message"):
        raise _RpcError(INVALID_PARAMS, "params.message: required")
    return request.message


def _v03_message(request: Mapping[str, Any]) -> Message:
    try:
        parsed = types_v03.SendMessageRequest.model_validate(dict(request))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise _RpcError(INVALID_PARAMS, f"{where}: {first['msg']}") from None
    return v03.to_core_send_message_request(parsed).message


def _to_dict(message: Any) -> dict[str, Any]:
    value: dict[str, Any] = json_format.MessageToDict(message)
    return value


def _error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
