"""A session's turn runs model and tool activities, journals each result before moving on,
hands tools the idempotency key ``session:step``, streams its events, and keeps the
conversation across turns (memory: conversation) or completes (memory: none)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from agents.conftest import (
    RecordingTools,
    ScriptedModel,
    agent,
    binding,
    kinds,
    reply,
    tool_calls,
    tool_results,
)


def weather_script(messages: list[dict[str, Any]]) -> Any:
    results = tool_results(messages)
    if not results:
        return tool_calls(("weather", {"city": "Paris"}), ("weather", {"city": "Rome"}))
    return reply("it is " + " and ".join(results))


async def test_a_turn_calls_tools_and_journals_every_step(make_runtime: Any) -> None:
    tools = RecordingTools(
        weather=lambda city: {"content": [{"type": "text", "text": f"sunny in {city}"}]}
    )
    model = ScriptedModel(weather_script)
    runtime = await make_runtime([agent(binding("weather"))], model, tools)
    sid = await runtime.create_session("default", "helper", message="weather?", user="alice")
    assert await runtime.wait(sid) == "waiting_input"
    assert [call[3] for call in tools.calls] == [f"{sid}:2", f"{sid}:3"]
    assert [call[2] for call in tools.calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert await kinds(runtime, sid) == [
        "session_created",
        "user_message",
        "activity_completed",  # model, step 1 (its result stands for its scheduling)
        "activity_scheduled",
        "activity_completed",  # tool, step 2
        "activity_scheduled",
        "activity_completed",  # tool, step 3
        "activity_completed",  # model, step 4
        "final",
    ]
    steps = [(e["kind"], e["step"]) for e in (await runtime.get(sid)).events if e.get("step")]
    assert steps == [
        ("activity_completed", 1),
        ("activity_scheduled", 2),
        ("activity_completed", 2),
        ("activity_scheduled", 3),
        ("activity_completed", 3),
        ("activity_completed", 4),
    ]
    view = await runtime.get(sid)
    assert view.events[-1]["text"] == "it is sunny in Paris and sunny in Rome"
    assert view.session.summary["steps"] == 4
    assert view.session.summary["tokens"] == 20
    last = model.requests[-1]
    assert last["model"] == "chat"
    assert last["messages"][0] == {"role": "system", "content": "You help."}
    assert last["tools"][0]["function"]["name"] == "weather"


async def test_conversation_memory_keeps_earlier_turns(make_runtime: Any) -> None:
    model = ScriptedModel(lambda messages: reply(f"{len(messages)} messages so far"))
    runtime = await make_runtime([agent()], model, RecordingTools())
    sid = await runtime.create_session("default", "helper")
    assert (await runtime.get(sid)).session.state == "waiting_input"
    await runtime.send_message(sid, "one")
    assert await runtime.wait(sid) == "waiting_input"
    await runtime.send_message(sid, "two")
    assert await runtime.wait(sid) == "waiting_input"
    roles = [m["role"] for m in model.requests[-1]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]


async def test_a_session_without_memory_completes_after_its_answer(make_runtime: Any) -> None:
    runtime = await make_runtime(
        [agent(memory="none")], ScriptedModel(lambda _m: reply("done")), RecordingTools()
    )
    sid = await runtime.create_session("default", "helper", message="go")
    assert await runtime.wait(sid) == "completed"


async def test_subscribers_see_the_turn_as_it_happens(make_runtime: Any) -> None:
    tools = RecordingTools(weather=lambda city: f"rain in {city}")
    runtime = await make_runtime([agent(binding("weather"))], ScriptedModel(weather_script), tools)
    sid = await runtime.create_session("default", "helper")
    seen = []
    async with runtime.subscribe(sid) as events:
        await runtime.send_message(sid, "weather?")
        async for event in events:
            seen.append((event.type, event.step))
    assert seen == [
        ("state", None),
        ("step_started", 1),
        ("step_started", 2),
        ("tool_call", 2),
        ("tool_result", 2),
        ("step_started", 3),
        ("tool_call", 3),
        ("tool_result", 3),
        ("step_started", 4),
        ("final", None),
        ("state", None),
    ]


async def test_streamed_model_deltas_reach_subscribers_and_fold_into_one_message(
    make_runtime: Any,
) -> None:
    async def streaming(request: dict[str, Any], token: str) -> Any:  # noqa: ARG001
        async def chunks() -> Any:
            for piece in ("Hel", "lo"):
                yield {"choices": [{"delta": {"content": piece}}]}
            yield {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}

        return chunks()

    runtime = await make_runtime([agent()], streaming, RecordingTools())
    sid = await runtime.create_session("default", "helper")
    deltas = []
    async with runtime.subscribe(sid) as events:
        await runtime.send_message(sid, "hi")
        async for event in events:
            if event.type == "model_delta":
                deltas.append(event.data["content"])
    assert deltas == ["Hel", "lo"]
    view = await runtime.get(sid)
    assert view.events[-1] == {**view.events[-1], "kind": "final", "text": "Hello"}
    assert view.session.summary["tokens"] == 5


async def test_waiting_on_a_session_busy_here_times_out_and_can_be_cancelled(
    make_runtime: Any,
) -> None:
    async def slow() -> dict[str, Any]:
        await asyncio.sleep(20)
        return {"content": [{"type": "text", "text": "late"}]}

    model = ScriptedModel(
        lambda messages: reply("done") if tool_results(messages) else tool_calls(("slow", {}))
    )
    runtime = await make_runtime(
        [agent(binding("slow", timeout=60))], model, RecordingTools(slow=slow)
    )
    sid = await runtime.create_session("default", "helper", message="go", user="alice")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await runtime.wait(sid, seconds=0.3)
    assert time.monotonic() - started < 5
    waiter = asyncio.ensure_future(runtime.wait(sid, seconds=30))
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiter, 5)
