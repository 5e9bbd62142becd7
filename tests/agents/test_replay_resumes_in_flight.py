"""Replay: a session stopped mid-activity resumes on the next worker from its journal. The
activity in flight runs again with the same idempotency key; completed ones never run again;
the model sees the same conversation it would have seen without the stop."""

from __future__ import annotations

import asyncio
from typing import Any

from agents.conftest import (
    RecordingTools,
    ScriptedModel,
    agent,
    binding,
    reply,
    tool_calls,
    tool_results,
)


def two_lookups(messages: list[dict[str, Any]]) -> Any:
    results = tool_results(messages)
    if len(results) < 2:
        return tool_calls(("lookup", {"n": len(results)}))
    return reply(" + ".join(results))


async def test_a_stopped_session_resumes_where_it_was(make_runtime: Any) -> None:
    stuck = asyncio.Event()
    calls = 0

    async def lookup(n: int) -> str:
        nonlocal calls
        calls += 1
        if calls == 2:  # the second call hangs: the worker is stopped under it
            stuck.set()
            await asyncio.sleep(60)
        return f"value {n}"

    tools = RecordingTools(lookup=lookup)
    model = ScriptedModel(two_lookups)
    first = await make_runtime([agent(binding("lookup", timeout=120))], model, tools)
    sid = await first.create_session("default", "helper", message="go")
    await stuck.wait()
    await first.stop()
    requests_before = len(model.requests)

    second = await make_runtime([agent(binding("lookup", timeout=120))], model, tools)
    assert await second.wait(sid) == "waiting_input"
    keys = [call[3] for call in tools.calls]
    assert keys == [f"{sid}:2", f"{sid}:4", f"{sid}:4"]  # step 4 was in flight: same key again
    assert len(model.requests) == requests_before + 1  # only the last model step ran after
    view = await second.get(sid)
    assert view.events[-1]["text"] == "value 0 + value 1"
    scheduled = [e["step"] for e in view.events if e["kind"] == "activity_scheduled"]
    completed = [e["step"] for e in view.events if e["kind"] == "activity_completed"]
    assert scheduled == [2, 4]  # the tool steps; a model step's result stands for it
    assert completed == [1, 2, 3, 4, 5]


async def test_a_resumed_model_step_is_asked_the_same_question(make_runtime: Any) -> None:
    stuck = asyncio.Event()
    seen: list[list[dict[str, Any]]] = []

    async def model(request: dict[str, Any], token: str) -> Any:  # noqa: ARG001
        seen.append(request["messages"])
        if len(seen) == 1:
            stuck.set()
            await asyncio.sleep(60)
        return reply("ok")

    first = await make_runtime([agent()], model, RecordingTools())
    sid = await first.create_session("default", "helper", message="question")
    await stuck.wait()
    await first.stop()
    second = await make_runtime([agent()], model, RecordingTools())
    assert await second.wait(sid) == "waiting_input"
    assert seen[0] == seen[1]
