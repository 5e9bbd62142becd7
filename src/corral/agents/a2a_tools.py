"""Agents as tools: the runtime behind the A2A endpoint, and the tool caller that reaches it.

Where it sits: :class:`RuntimeSessions` is the ``A2ASessions`` seam over an
:class:`~corral.agents.runtime.AgentRuntime` (start or continue a session, wait for the turn,
read its answer from the journal). :class:`A2AToolCaller` is a ``ToolCaller`` that sends calls
of ``agent:<ns>/<name>`` tools to that agent's :class:`~corral.agents.a2a.A2AEndpoint` as A2A
``SendMessage`` requests and every other call to the MCP caller behind it.

The calling session's token (``SessionCredentials.tool_token``, audience = the callee's SPIFFE
id) is verified exactly as the HTTP route does, and the callee's session inherits the chain
from it: a session of ``research/planner`` started by ``default/helper`` for alice presents
``sub = alice, act = {planner, act: {helper}}`` on its own calls.

The call's idempotency key is the A2A ``messageId``, and a new session's id is derived from it
and the caller (:func:`idempotent_session_id`): a tool step retried after a crash reaches the
session its first attempt started (and waits for that turn) instead of starting another.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from corral.agents.a2a import A2AEndpoint, A2ATurn
from corral.agents.authority import AGENT_TOOL_PREFIX, Delegation
from corral.agents.config import ToolBinding
from corral.agents.errors import SessionExists, UnknownSession
from corral.agents.runtime import AgentRuntime
from corral.agents.seams import ToolCaller
from corral.identity import Principal
from corral.identity.jose import b64url_decode
from corral.identity.principal import workload_namespace

SEND_MESSAGE = "send_message"
"""The one function an agent tool has: ``{"message": str, "context"?: str}``."""
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
"""Session ids' alphabet (``corral.agents.runtime.new_session_id``)."""
_SESSION_ID_LENGTH, _TIME_CHARS = 17, 9


def agent_tool_binding(
    target: str,
    *,
    function: str | None = None,
    description: str = "",
    timeout_seconds: float = 300.0,
) -> ToolBinding:
    """A tool binding that calls agent ``target`` (``name`` or ``namespace/name``)."""
    name = target.rpartition("/")[2]
    return ToolBinding(
        function or f"ask_{name.replace('-', '_')}",
        f"{AGENT_TOOL_PREFIX}{target}",
        SEND_MESSAGE,
        description or f"Ask the agent {target}; it answers in text.",
        {
            "type": "object",
            "properties": {
                "message": {"type": "string", "description": "what to ask"},
                "context": {"type": "string", "description": "continue this conversation"},
            },
            "required": ["message"],
        },
        "read",
        timeout_seconds,
    )


class RuntimeSessions:
    """``A2ASessions`` over a runtime (set ``runtime`` after building it, if the runtime's own
    tool caller needs this object first)."""

    def __init__(self, runtime: AgentRuntime | None = None, *, wait_seconds: float = 120.0):
        self.runtime = runtime
        self.wait_seconds = wait_seconds

    async def send(
        self,
        namespace: str,
        agent: str,
        text: str,
        *,
        session_id: str | None,
        delegation: Delegation,
        message_id: str | None = None,
    ) -> A2ATurn:
        runtime = self.runtime
        if runtime is None:
            raise RuntimeError("RuntimeSessions has no runtime yet")
        turn: int | None = None  # None: the latest
        if session_id is None:
            chosen = (
                idempotent_session_id(namespace, agent, delegation, message_id)
                if message_id
                else None
            )
            try:
                session_id = await runtime.create_session(
                    namespace,
                    agent,
                    message=text,
                    user=delegation.user,
                    actors=delegation.actors,
                    session_id=chosen,
                )
            except SessionExists:
                # This message started a session already (a retry): answer from its first turn.
                assert chosen is not None
                session_id, turn = chosen, 1
                await self._check_caller(runtime, session_id, namespace, agent, delegation)
        else:
            await self._check_caller(runtime, session_id, namespace, agent, delegation)
            await runtime.send_message(session_id, text)
        try:
            state = await runtime.wait(session_id, seconds=self.wait_seconds)
        except TimeoutError:
            state = "active"
        events = (await runtime.get(session_id)).events
        if turn is not None and _turns(events) > turn:
            state = "waiting_input"  # that turn was answered; the session went on since
        turn = turn or _turns(events)
        return A2ATurn(session_id, turn, state, _answer(events, turn))

    @staticmethod
    async def _check_caller(
        runtime: AgentRuntime,
        session_id: str,
        namespace: str,
        agent: str,
        delegation: Delegation,
    ) -> None:
        """UnknownSession unless the session is this agent's, started by this caller."""
        view = await runtime.get(session_id)
        created = view.events[0] if view.events else {}
        mine = (view.session.namespace, view.session.agent) == (namespace, agent)
        same_caller = created.get("user") == delegation.user and tuple(
            created.get("actors") or ()
        ) == tuple(delegation.actors)
        if not (mine and same_caller):
            raise UnknownSession(session_id)  # someone else's: do not say it exists


def idempotent_session_id(
    namespace: str, agent: str, delegation: Delegation, message_id: str
) -> str:
    """The id of the session that message ``message_id`` from this caller starts at agent
    ``namespace/agent``: the same inputs, the same id. Shaped like the runtime's ids; when the
    message id is a corral idempotency key (``<session id>:<step>``) the calling session's time
    prefix leads, so a listing (newest first) shows the callee's session near its caller's."""
    parties = [namespace, agent, delegation.user or "", *delegation.actors, message_id]
    digest = int.from_bytes(hashlib.sha256("\n".join(parties).encode()).digest()[:11])
    chars = [_CROCKFORD[(digest >> (5 * i)) & 31] for i in range(_SESSION_ID_LENGTH)]
    caller = message_id.partition(":")[0]
    if len(caller) == _SESSION_ID_LENGTH and all(char in _CROCKFORD for char in caller):
        chars[:_TIME_CHARS] = caller[:_TIME_CHARS]
    return "".join(chars)


VerifyToken = Callable[[str, str], Principal]
"""``(token, audience) -> the verified caller``; raises when the token is not good there."""


class A2AToolCaller:
    """A ``ToolCaller``: ``agent:`` tools through the A2A endpoint, the rest to ``tools``."""

    def __init__(
        self,
        endpoint: A2AEndpoint,
        verify: VerifyToken,
        tools: ToolCaller | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._verify = verify
        self._tools = tools

    async def call(
        self,
        tool: str,
        name: str,
        arguments: dict[str, Any],
        idempotency_key: str,
        token: str,
    ) -> Any:
        if not tool.startswith(AGENT_TOOL_PREFIX):
            if self._tools is None:
                raise LookupError(f"tool {tool!r}: no MCP tool caller here")
            return await self._tools.call(tool, name, arguments, idempotency_key, token)
        if name != SEND_MESSAGE:
            return _tool_error(f"agent tools have one function, {SEND_MESSAGE}, not {name!r}")
        message, context = arguments.get("message"), arguments.get("context")
        if not isinstance(message, str) or not message:
            return _tool_error("arguments.message: required, a non-empty string")
        if context is not None and not isinstance(context, str):
            return _tool_error("arguments.context: must be a string (a previous answer's id)")
        audience = _audience(token)
        namespace = workload_namespace(audience)
        target = audience.rpartition("/")[2]
        ref = tool.removeprefix(AGENT_TOOL_PREFIX)
        if namespace is None or ref.rpartition("/")[2] != target or "/agent/" not in audience:
            return _tool_error(f"the session's token is not for agent {ref}")
        caller = self._verify(token, audience)
        request = send_message_request(message, context_id=context, message_id=idempotency_key)
        response = await self._endpoint.handle(namespace, target, request, caller)
        return tool_result(response)


def send_message_request(
    text: str, *, context_id: str | None = None, message_id: str | None = None
) -> dict[str, Any]:
    """An A2A 1.0 JSON-RPC ``SendMessage`` request carrying ``text``."""
    message: dict[str, Any] = {
        "messageId": message_id or secrets.token_hex(8),
        "role": "ROLE_USER",
        "parts": [{"text": text}],
    }
    if context_id:
        message["contextId"] = context_id
    return {
        "jsonrpc": "2.0",
        "id": message["messageId"],
        "method": "SendMessage",
        "params": {"message": message},
    }


def tool_result(response: Mapping[str, Any]) -> dict[str, Any]:
    """An A2A JSON-RPC response as an MCP-shaped tool result the model reads."""
    error = response.get("error")
    if isinstance(error, Mapping):
        return _tool_error(
            f"the agent refused the call ({error.get('code')}): {error.get('message')}"
        )
    task = (response.get("result") or {}).get("task") or {}
    status = task.get("status") or {}
    state = str(status.get("state", "TASK_STATE_UNSPECIFIED"))
    parts = (status.get("message") or {}).get("parts") or []
    text = "\n".join(str(part.get("text", "")) for part in parts if isinstance(part, Mapping))
    body = {"answer": text, "context": task.get("contextId"), "state": state}
    failed = state in ("TASK_STATE_FAILED", "TASK_STATE_CANCELED", "TASK_STATE_REJECTED")
    return {"content": [{"type": "text", "text": orjson.dumps(body).decode()}], "isError": failed}


def _tool_error(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


def _audience(token: str) -> str:
    """The ``aud`` of a token, read before verification only to pick the verifier; the
    verification that follows checks it (and the signature) for real."""
    try:
        claims = orjson.loads(b64url_decode(token.split(".")[1]))
    except (IndexError, ValueError, orjson.JSONDecodeError):
        return ""
    audience = claims.get("aud") if isinstance(claims, dict) else None
    return audience if isinstance(audience, str) else ""


def _turns(events: list[dict[str, Any]]) -> int:
    return sum(1 for event in events if event["kind"] == "user_message")


def _answer(events: list[dict[str, Any]], turn: int) -> str:
    """The text that ended turn ``turn`` (from 1): its final answer, else its last error."""
    answer, seen = "", 0
    for event in events:
        if event["kind"] == "user_message":
            seen += 1
            if seen > turn:
                break
            answer = ""
        elif event["kind"] == "final":
            answer = str(event.get("text", ""))
        elif event["kind"] == "error" and not answer:
            answer = f"error ({event.get('code')}): {event.get('message')}"
    return answer
