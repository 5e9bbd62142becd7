"""``model: "agent:NAME"`` on the gateway's chat completions runs a turn of a new session of
that agent, answered to the real ``openai`` client as a chat completion, streamed or not."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from agents.conftest import RecordingTools, ScriptedModel, agent, binding, reply, tool_calls
from corral.agents.runtime import AgentRuntime
from corral.gateway import RouteSource, create_gateway
from corral.identity import Principal
from corral.server.agents_openai import agent_model_stage

ALICE = Principal("team-key", "default/alice-key", team="ops", namespace="default")


def weather_then_answer(messages: list[dict[str, Any]]) -> Any:
    if not any(m["role"] == "tool" for m in messages):
        return tool_calls(("get_weather", {"city": messages[-1]["content"]}))
    return reply("It is sunny.")


def client_for(runtime: AgentRuntime | None) -> openai.AsyncOpenAI:
    def authorize(_principal: Principal | None, _namespace: str, name: str) -> str | None:
        return "not for you" if name == "secret-agent" else None

    gateway = create_gateway(
        RouteSource(),
        authenticate=lambda token: ALICE if token == "alice" else None,
        route_stages=[agent_model_stage(lambda: runtime, authorize)],
    )
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway))
    return openai.AsyncOpenAI(
        base_url="http://corral/v1", api_key="alice", http_client=http, max_retries=0
    )


@pytest.fixture
async def runtime(make_runtime: Any) -> AgentRuntime:
    tools = RecordingTools(get_weather=lambda city: f"sunny in {city}")
    found: AgentRuntime = await make_runtime(
        [agent(binding("get_weather"))], ScriptedModel(weather_then_answer), tools
    )
    return found


async def test_an_agent_answers_a_chat_completion(runtime: AgentRuntime) -> None:
    async with client_for(runtime) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="agent:helper", messages=[{"role": "user", "content": "Paris"}]
        )
    completion = raw.parse()
    assert completion.choices[0].message.content == "It is sunny."
    session = raw.headers["x-corral-session"]
    view = await runtime.get(session)
    assert view.session.state == "waiting_input"
    assert view.events[0]["user"] == ALICE.id


async def test_an_agent_streams_its_answer_as_chunks(runtime: AgentRuntime) -> None:
    async with client_for(runtime) as client:
        stream = await client.chat.completions.create(
            model="agent:default/helper",
            messages=[{"role": "user", "content": "Oslo"}],
            stream=True,
        )
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream]
    assert "".join(pieces) == "It is sunny."


@pytest.mark.parametrize(
    ("model", "messages", "status", "text"),
    [
        ("agent:nobody", [{"role": "user", "content": "hi"}], 404, "agent default/nobody"),
        ("agent:secret-agent", [{"role": "user", "content": "hi"}], 403, "not for you"),
        ("agent:a/b/c", [{"role": "user", "content": "hi"}], 400, "agent:NAMESPACE/NAME"),
        ("agent:helper", [{"role": "system", "content": "hi"}], 400, "needs a task"),
    ],
)
async def test_bad_agent_requests_are_clear_4xx(
    runtime: AgentRuntime, model: str, messages: list[Any], status: int, text: str
) -> None:
    async with client_for(runtime) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model=model, messages=messages)
    assert raised.value.status_code == status
    assert text in raised.value.message


async def test_without_an_agents_runtime_the_gateway_says_so() -> None:
    async with client_for(None) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(
                model="agent:helper", messages=[{"role": "user", "content": "hi"}]
            )
    assert raised.value.status_code == 503
    assert "agents role" in raised.value.message
