"""Sessions waiting for a person are only rows: no task, no memory, no lease. A message or an
approval decision activates them from the journal; a denial goes back to the model; an
approval nobody gives in time is denied by corral when the session's wake-up comes due."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agents.conftest import (
    RecordingTools,
    ScriptedModel,
    agent,
    binding,
    reply,
    tool_calls,
    tool_results,
)
from corral.agents.config import Approvals
from corral.agents.errors import SessionStateError, UnknownSession


def delete_script(messages: list[dict[str, Any]]) -> Any:
    results = tool_results(messages)
    if not results:
        return tool_calls(("delete_file", {"path": "/tmp/x"}))
    return reply(f"result: {results[-1]}")


async def test_a_waiting_session_holds_no_task_and_no_lease(
    make_runtime: Any, journal: Any
) -> None:
    runtime = await make_runtime([agent()], ScriptedModel(lambda _m: reply("hi")), RecordingTools())
    sid = await runtime.create_session("default", "helper", message="hello")
    assert await runtime.wait(sid) == "waiting_input"
    await asyncio.sleep(0.01)
    assert runtime.live_sessions == 0
    row = await journal.get(sid)
    assert (row.state, row.owner, row.lease_expires) == ("waiting_input", None, None)
    assert row.wake_at is not None


async def test_a_destructive_tool_waits_for_approval_then_runs(
    make_runtime: Any, journal: Any
) -> None:
    tools = RecordingTools(delete_file=lambda path: f"deleted {path}")
    runtime = await make_runtime(
        [agent(binding("delete_file", risk="destructive"))], ScriptedModel(delete_script), tools
    )
    sid = await runtime.create_session("default", "helper", message="clean up")
    assert await runtime.wait(sid) == "waiting_approval"
    assert tools.calls == []
    assert runtime.live_sessions == 0
    assert (await journal.get(sid)).owner is None
    view = await runtime.get(sid)
    asked = view.events[-1]
    assert asked["kind"] == "approval_requested"
    assert asked["step"] == 2
    assert asked["arguments"] == {"path": "/tmp/x"}
    with pytest.raises(SessionStateError, match="not step 5"):
        await runtime.decide_approval(sid, 5, True)
    with pytest.raises(SessionStateError, match="waiting_approval, not waiting_input"):
        await runtime.send_message(sid, "hurry")
    await runtime.decide_approval(sid, 2, True, "ok", by="bob")
    assert await runtime.wait(sid) == "waiting_input"
    assert tools.calls == [("toolbox", "delete_file", {"path": "/tmp/x"}, f"{sid}:2")]
    decided = [e for e in (await runtime.get(sid)).events if e["kind"] == "approval_decided"]
    assert decided[0]["by"] == "bob"
    with pytest.raises(SessionStateError, match="waiting_input, not waiting_approval"):
        await runtime.decide_approval(sid, 2, True)


async def test_a_denial_goes_back_to_the_model_as_a_tool_error(make_runtime: Any) -> None:
    tools = RecordingTools(delete_file=lambda path: f"deleted {path}")
    model = ScriptedModel(delete_script)
    runtime = await make_runtime([agent(binding("delete_file", risk="write"))], model, tools)
    sid = await runtime.create_session("default", "helper", message="clean up")
    assert await runtime.wait(sid) == "waiting_approval"
    await runtime.decide_approval(sid, 2, False, "not today")
    assert await runtime.wait(sid) == "waiting_input"
    assert tools.calls == []
    assert "denied: not today" in model.requests[-1]["messages"][-1]["content"]


async def test_approval_rules_name_tools_and_risks(make_runtime: Any) -> None:
    tools = RecordingTools(delete_file=lambda **_: "ok")
    rules = Approvals(require=frozenset({"delete_file"}))
    runtime = await make_runtime(
        [agent(binding("delete_file", risk="read"), approvals=rules)],
        ScriptedModel(delete_script),
        tools,
    )
    sid = await runtime.create_session("default", "helper", message="go")
    assert await runtime.wait(sid) == "waiting_approval"
    free = Approvals(require=frozenset())
    runtime2 = await make_runtime(
        [agent(binding("delete_file", risk="destructive"), name="free", approvals=free)],
        ScriptedModel(delete_script),
        tools,
    )
    sid2 = await runtime2.create_session("default", "free", message="go")
    assert await runtime2.wait(sid2) == "waiting_input"


async def test_an_approval_nobody_gives_is_denied_when_it_times_out(make_runtime: Any) -> None:
    tools = RecordingTools(delete_file=lambda **_: "ok")
    model = ScriptedModel(delete_script)
    rules = Approvals(timeout_seconds=0.2)
    runtime = await make_runtime(
        [agent(binding("delete_file", risk="write"), approvals=rules)], model, tools
    )
    sid = await runtime.create_session("default", "helper", message="go")
    assert await runtime.wait(sid) == "waiting_approval"
    await asyncio.sleep(0.4)  # the maintenance loop polls every 50 ms here
    assert await runtime.wait(sid) == "waiting_input"
    decided = [e for e in (await runtime.get(sid)).events if e["kind"] == "approval_decided"]
    assert decided[0]["approved"] is False
    assert decided[0]["by"] == "corral"
    assert tools.calls == []


async def test_unknown_sessions_and_agents_are_named(make_runtime: Any) -> None:
    from corral.agents.errors import UnknownAgent

    runtime = await make_runtime([agent()], ScriptedModel(lambda _m: reply("x")), RecordingTools())
    with pytest.raises(UnknownSession, match="nope"):
        await runtime.send_message("nope", "hi")
    with pytest.raises(UnknownAgent, match="default/ghost"):
        await runtime.create_session("default", "ghost")


async def test_terminate_ends_running_and_waiting_sessions(make_runtime: Any) -> None:
    gate = asyncio.Event()
    called = asyncio.Event()

    async def slow(path: str) -> str:  # noqa: ARG001
        called.set()
        await gate.wait()
        return "late"

    tools = RecordingTools(delete_file=slow)
    runtime = await make_runtime(
        [agent(binding("delete_file"))], ScriptedModel(delete_script), tools
    )
    running = await runtime.create_session("default", "helper", message="go")
    waiting = await runtime.create_session("default", "helper")
    await called.wait()
    assert await runtime.terminate(running, "stop it") == "terminated"
    assert await runtime.terminate(waiting) == "terminated"
    for sid in (running, waiting):
        view = await runtime.get(sid)
        assert view.session.state == "terminated"
        assert view.events[-1]["kind"] == "terminated"
    assert (await runtime.get(running)).events[-1]["reason"] == "stop it"
    with pytest.raises(SessionStateError, match="terminated"):
        await runtime.send_message(waiting, "hello?")
