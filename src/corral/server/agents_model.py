"""Agents' model calls go through the gateway, as the agent: the runtime's ``ModelCaller``.

Each call is a streamed ``POST {gateway}/v1/chat/completions`` over HTTP with the session's
workload JWT (audience: the gateway), so authentication, Cedar policy, rate limits, budgets,
guardrails, metering, tracing and audit apply to it exactly as to any client's call, with the
agent as the principal and the user it acts for in ``act``. The gateway is this process's own
listener when it runs the gateway role, else ``CORRAL_GATEWAY_URL``.

When the upstream sends no usage chunk (llama.cpp's server does not), the call's tokens are
estimated at 4 characters a token, so a session's token limit still counts it.

A refusal the model cannot fix by trying again (401, 403, 404, 400: policy, identity, an unknown
Endpoint, a request the gateway rejects) fails the step at once; 429 (budget, rate limit), 408
and 5xx are retried by the runtime.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson

from corral.agents.activities import ActivityError

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
CONNECT_TIMEOUT_S = 5.0


class GatewayModelCaller:
    """Streams chat completions from the gateway at ``base_url`` (``http://host:port``)."""

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None):
        self._url = base_url.rstrip("/") + "/v1/chat/completions"
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S), transport=transport
        )

    async def __call__(
        self, request: dict[str, Any], token: str
    ) -> AsyncIterator[Mapping[str, Any]]:
        body = {**request, "stream": True, "stream_options": {"include_usage": True}}
        return self._chunks(orjson.dumps(body), token)

    async def _chunks(self, body: bytes, token: str) -> AsyncIterator[Mapping[str, Any]]:
        headers = {"content-type": "application/json", "accept": "text/event-stream"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        async with self._http.stream("POST", self._url, content=body, headers=headers) as reply:
            if reply.status_code >= 400:
                raise _refusal(reply.status_code, await reply.aread())
            # The gateway's chunks are one ``data:`` line each (OpenAI's stream shape): each is
            # handed on as it arrives, so the runtime's model deltas follow the model.
            usage_seen, written = False, 0
            async for line in reply.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = orjson.loads(data)
                if isinstance(chunk, dict) and "error" in chunk:
                    raise ActivityError("model_error", _message(chunk, 200), retryable=True)
                if isinstance(chunk, dict):
                    usage_seen = usage_seen or bool(chunk.get("usage"))
                    written += _text_length(chunk)
                yield chunk
        if not usage_seen:
            # Some servers (llama.cpp's) send no usage chunk even when asked: estimate it, at
            # 4 characters a token, so the session's token limit still counts the call.
            prompt = len(body) // 4
            completion = (written + 3) // 4
            yield {"choices": [], "usage": _estimate(prompt, completion)}

    async def aclose(self) -> None:
        await self._http.aclose()


def _refusal(status: int, content: bytes) -> ActivityError:
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        body = {"error": {"message": content.decode("utf-8", "replace")[:300]}}
    return ActivityError(
        "model_refused" if status not in RETRYABLE_STATUSES else "model_error",
        _message(body, status),
        retryable=status in RETRYABLE_STATUSES,
    )


def _message(body: Any, status: int) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = f" ({error['code']})" if error.get("code") else ""
        return f"the gateway answered {status}{code}: {error.get('message')}"
    return f"the gateway answered {status}: {str(body)[:300]}"


def _text_length(chunk: dict[str, Any]) -> int:
    total = 0
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict):
            content = delta.get("content")
            total += len(content) if isinstance(content, str) else 0
            for call in delta.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                arguments = function.get("arguments") if isinstance(function, dict) else None
                total += len(arguments) if isinstance(arguments, str) else 0
    return total


def _estimate(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
