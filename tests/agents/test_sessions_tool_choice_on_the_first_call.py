"""An agent's ``tool_choice`` applies to the first model call of each turn only: the model is
made to call a tool, then free to answer with what the tool returned (no forced loop)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from agents.conftest import RecordingTools, ScriptedModel, agent, binding, reply, tool_calls
from corral.agents.config import AgentConfig


def weather_then_answer(messages: list[dict[str, Any]]) -> Any:
    if not any(m["role"] == "tool" for m in messages):
        return tool_calls(("get_weather", {"city": "Paris"}))
    return reply("Sunny.")


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("required", "required"),
        ("get_weather", {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
async def test_the_first_call_of_a_turn_is_made_to_call_a_tool(
    make_runtime: Any, choice: str, sent: Any
) -> None:
    model = ScriptedModel(weather_then_answer)
    config = replace(agent(binding("get_weather")), tool_choice=choice)
    runtime = await make_runtime(
        [config], model, RecordingTools(get_weather=lambda city: f"sunny in {city}")
    )
    session = await runtime.create_session("default", "helper", message="Weather?")
    assert await runtime.wait(session) == "waiting_input"
    assert [request.get("tool_choice") for request in model.requests] == [sent, None]
    # The next turn is forced again.
    await runtime.send_message(session, "And tomorrow?")
    assert await runtime.wait(session) == "waiting_input"
    assert model.requests[2].get("tool_choice") == sent


def test_a_tool_choice_naming_no_function_of_the_agent_is_refused() -> None:
    with pytest.raises(ValueError, match="toolChoice 'send_mail': use auto, required, none"):
        AgentConfig("default", "helper", "chat", tools={}, tool_choice="send_mail")
