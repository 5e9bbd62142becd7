"""Agents' model calls are streamed chat completions from the gateway with the session's token:
chunks are handed on as they arrive, and a refusal is a step error that says what the gateway
said (retried only when trying again can help: 429, 408, 5xx)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from corral.agents.activities import ActivityError, call_model
from corral.server.agents_model import GatewayModelCaller


def sse(*chunks: Any) -> bytes:
    lines = [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks]
    return b"".join(lines) + b"data: [DONE]\n\n"


def caller(handler: Any) -> GatewayModelCaller:
    return GatewayModelCaller("http://gateway:8080", transport=httpx.MockTransport(handler))


async def test_a_streamed_answer_becomes_one_message_and_deltas() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = sse(
            {"choices": [{"delta": {"content": "Hel"}}]},
            {"choices": [{"delta": {"content": "lo"}}]},
            {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
        )
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    deltas: list[dict[str, Any]] = []
    model = caller(handler)
    result = await call_model(
        model, {"model": "chat", "messages": []}, "jwt-1", seconds=5, on_delta=deltas.append
    )
    await model.aclose()
    assert result == {
        "message": {"content": "Hello"},
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    assert deltas == [{"content": "Hel"}, {"content": "lo"}]
    (request,) = seen
    assert str(request.url) == "http://gateway:8080/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer jwt-1"
    sent = orjson.loads(request.content)
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [(403, "model_refused", False), (401, "model_refused", False), (429, "model_error", True)],
)
async def test_a_refusal_says_what_the_gateway_said(
    status: int, code: str, retryable: bool
) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        error = {"error": {"message": "no budget left", "code": "budget_exceeded"}}
        return httpx.Response(status, json=error)

    model = caller(handler)
    with pytest.raises(ActivityError) as raised:
        await call_model(model, {"model": "chat", "messages": []}, "", seconds=5)
    await model.aclose()
    assert raised.value.code == code
    assert raised.value.retryable is retryable
    assert f"answered {status} (budget_exceeded): no budget left" in raised.value.message


async def test_a_stream_without_usage_is_estimated_so_token_limits_count_it() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        body = sse({"choices": [{"delta": {"content": "x" * 40}}]})
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    model = caller(handler)
    request = {"model": "chat", "messages": [{"role": "user", "content": "y" * 400}]}
    result = await call_model(model, request, "", seconds=5)
    await model.aclose()
    usage = result["usage"]
    assert usage["completion_tokens"] == 10
    assert usage["prompt_tokens"] >= 100
    assert usage["total_tokens"] == usage["prompt_tokens"] + 10


async def test_a_tool_call_streamed_with_its_name_in_every_chunk_keeps_one_name() -> None:
    # llama.cpp's server (chatml-function-calling) repeats the function name in every delta.
    def handler(_request: httpx.Request) -> httpx.Response:
        pieces = ['{"', "city", '": "', "Paris", '"}']
        chunks = [
            {
                "choices": [
                    {
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "call_0",
                                    "type": "function",
                                    "function": {"name": "get_weather", "arguments": piece},
                                }
                            ]
                        }
                    }
                ]
            }
            for piece in pieces
        ]
        return httpx.Response(200, content=sse(*chunks))

    model = caller(handler)
    result = await call_model(model, {"model": "chat", "messages": []}, "", seconds=5)
    await model.aclose()
    (call,) = result["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert call["id"] == "call_0"
