"""Agents as OpenAI models: ``model: "agent:NAME"`` (or ``agent:NS/NAME``) on
``/v1/chat/completions`` runs one turn of a new session of that Agent.

A gateway route stage (before Endpoint resolution) takes such requests: the caller's last user
message is the task, the session is the caller's (``corral sessions ls`` shows it), and the
answer comes back as a chat completion — streamed as ``chat.completion.chunk`` events when
``stream: true``, the model's text as it is generated. The session id is in the
``x-corral-session`` header and in the body's ``corral`` field. A turn that stops for an
approval answers with what it waits for (``corral sessions approve …``); one that fails answers
502 with the session's reason. The agent's own model and tool calls are governed as always
(they go through the gateway as the agent).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from corral.agents.errors import SessionStateError, UnknownAgent
from corral.gateway import Call, GatewayError, Handler, Stage
from corral.server.agents_api import ADMIN, Authorize, Sessions

AGENT_MODEL_PREFIX = "agent:"
_JSON = (b"content-type", b"application/json")
_SSE = (b"content-type", b"text/event-stream")


def agent_model_stage(sessions: Callable[[], Sessions | None], authorize: Authorize) -> Stage:
    """The route stage answering ``agent:`` models (see the module docstring)."""

    async def agent_model(call: Call, call_next: Handler) -> None:
        model = call.payload.get("model")
        if not isinstance(model, str) or not model.startswith(AGENT_MODEL_PREFIX):
            await call_next(call)
            return
        if call.path != "/v1/chat/completions":
            raise GatewayError(
                400, f"model {model!r}: agents answer /v1/chat/completions only", code="bad_model"
            )
        namespace, agent = _agent_of(model, call)
        runtime = sessions()
        if runtime is None:
            raise GatewayError(
                503,
                "agents run in processes with the agents role; none is ready here",
                type="server_error",
                code="agents_unavailable",
            )
        principal = call.principal
        refusal = authorize(principal, namespace, agent)
        if refusal is not None:
            raise GatewayError(403, refusal, type="permission_error", code="permission_denied")
        task = _task(call.payload)
        owner = principal.id if principal is not None else ADMIN
        try:
            session_id = await runtime.create_session(namespace, agent, user=owner)
        except UnknownAgent as error:
            raise GatewayError(404, str(error), code="model_not_found") from None
        subscription = runtime.subscribe(session_id)
        try:
            await runtime.send_message(session_id, task)
        except SessionStateError as error:
            subscription.close()
            raise GatewayError(409, str(error), code="session_state_conflict") from None
        answer = _Answer(model, session_id)

        async def tokens_used() -> None:
            summary = (await runtime.get(session_id)).session.summary
            if isinstance(summary.get("tokens"), int):
                answer.tokens = summary["tokens"]

        if call.payload.get("stream") is True:
            await answer.stream(call, subscription, tokens_used)
        else:
            async for event in subscription:
                answer.take(event.type, event.data, event.step)
            await tokens_used()
            await answer.respond(call)

    return agent_model


def _agent_of(model: str, call: Call) -> tuple[str, str]:
    ref = model[len(AGENT_MODEL_PREFIX) :]
    namespace, _, name = ref.rpartition("/")
    if not name or "/" in namespace:
        raise GatewayError(
            400, f"model {model!r}: write agent:NAME or agent:NAMESPACE/NAME", code="bad_model"
        )
    # An API key's or a workload's own namespace; "default" for users and the admin token.
    principal = call.principal
    own = principal.namespace if principal is not None and principal.kind != "user" else None
    return namespace or own or "default", name


def _task(payload: dict[str, Any]) -> str:
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                text = _text(message.get("content"))
                if text.strip():
                    return text
    raise GatewayError(
        400, "an agent needs a task: send at least one non-empty user message", param="messages"
    )


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(part for part in parts if isinstance(part, str))
    return ""


class _Answer:
    """The turn folded into an OpenAI chat completion."""

    def __init__(self, model: str, session_id: str) -> None:
        self.model, self.session_id = model, session_id
        self.id = f"chatcmpl-{session_id}"
        self.created = int(time.time())
        self.text: list[str] = []
        self.final: str | None = None
        self.state = "active"
        self.reason = ""
        self.waiting_step: int | None = None
        self.tokens = 0

    def take(self, kind: str, data: dict[str, Any], step: int | None) -> str:
        """Fold one event; the text it adds to the answer (for streaming)."""
        if kind == "model_delta" and isinstance(data.get("content"), str):
            self.text.append(data["content"])
            return str(data["content"])
        if kind == "final":
            self.final = str(data.get("text") or "")
        elif kind == "approval_needed":
            self.waiting_step = step
        elif kind == "state":
            self.state = str(data.get("state"))
            self.reason = str(data.get("reason") or "")
        return ""

    @property
    def content(self) -> str:
        if self.state == "waiting_approval":
            return (
                f"(session {self.session_id} waits for approval of step {self.waiting_step}: "
                f"corral sessions approve {self.model[len(AGENT_MODEL_PREFIX) :]} "
                f"{self.session_id} {self.waiting_step})"
            )
        return self.final if self.final is not None else "".join(self.text)

    @property
    def failed(self) -> bool:
        return self.state in ("failed", "expired", "terminated")

    def extra(self) -> dict[str, Any]:
        return {
            "session": self.session_id,
            "state": self.state,
            "reason": self.reason or None,
            "tokens": self.tokens,
        }

    async def respond(self, call: Call) -> None:
        if self.failed:
            raise GatewayError(
                502,
                f"agent session {self.session_id} {self.state}: {self.reason or 'no reason given'}",
                type="server_error",
                code="agent_failed",
                headers=[(b"x-corral-session", self.session_id.encode())],
            )
        body = orjson.dumps(
            {
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": self.tokens},
                "corral": self.extra(),
            }
        )
        call.response_started = True
        headers = [_JSON, (b"content-length", str(len(body)).encode()), self._session_header()]
        await call.send({"type": "http.response.start", "status": 200, "headers": headers})
        await call.send({"type": "http.response.body", "body": body})

    async def stream(
        self, call: Call, subscription: Any, tokens_used: Callable[[], Awaitable[None]]
    ) -> None:
        call.response_started = True
        headers = [_SSE, (b"cache-control", b"no-cache"), self._session_header()]
        await call.send({"type": "http.response.start", "status": 200, "headers": headers})
        await self._chunk(call, {"role": "assistant", "content": ""}, None)
        streamed = False
        async for event in subscription:
            piece = self.take(event.type, event.data, event.step)
            if piece:
                streamed = True
                await self._chunk(call, {"content": piece}, None)
        if not streamed or self.state == "waiting_approval" or self.failed:
            ending = self.content if not self.failed else f"(session {self.state}: {self.reason})"
            await self._chunk(call, {"content": ending}, None)
        await tokens_used()
        await self._chunk(call, {}, "stop", extra=self.extra())
        await call.send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def _chunk(
        self,
        call: Call,
        delta: dict[str, Any],
        finish: str | None,
        *,
        extra: dict[str, Any] | None = None,
    ) -> None:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if extra is not None:
            chunk["corral"] = extra
        body = b"data: " + orjson.dumps(chunk) + b"\n\n"
        await call.send({"type": "http.response.body", "body": body, "more_body": True})

    def _session_header(self) -> tuple[bytes, bytes]:
        return (b"x-corral-session", self.session_id.encode())
