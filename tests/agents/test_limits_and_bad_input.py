"""Bad input becomes a journaled, visible error and the session goes on or ends within its
limits: malformed tool results, hanging and crashing tools, invalid tool-call JSON, unknown
tools, failing models, runaway loops; max steps, tokens, cost and duration end sessions with
a reason; per-agent concurrency queues sessions; GC removes old ended sessions."""

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


def once_then_answer(*calls: tuple[str, Any]) -> Any:
    def script(messages: list[dict[str, Any]]) -> Any:
        results = tool_results(messages)
        if not results:
            return tool_calls(*calls)
        return reply(" | ".join(results))

    return script


async def errors_of(runtime: Any, sid: str) -> list[tuple[str, str]]:
    return [
        (e["kind"], e["code"])
        for e in (await runtime.get(sid)).events
        if e["kind"] in ("error", "activity_failed")
    ]


async def test_broken_tools_become_tool_errors_the_model_sees(make_runtime: Any) -> None:
    async def hang() -> str:
        await asyncio.sleep(30)
        return "never"

    def crash() -> str:
        raise ConnectionResetError("MCP server exited with code 1")

    tools = RecordingTools(
        malformed=lambda: 42, hang=hang, crash=crash, no_content=lambda: {"isError": False}
    )
    model = ScriptedModel(
        once_then_answer(("malformed", {}), ("hang", {}), ("crash", {}), ("no_content", {}))
    )
    runtime = await make_runtime(
        [
            agent(
                binding("malformed"),
                binding("hang", timeout=0.1),
                binding("crash"),
                binding("no_content"),
            )
        ],
        model,
        tools,
    )
    sid = await runtime.create_session("default", "helper", message="go")
    assert await runtime.wait(sid) == "waiting_input"
    assert await errors_of(runtime, sid) == [
        ("activity_failed", "malformed_tool_result"),
        ("activity_failed", "tool_timeout"),
        ("activity_failed", "tool_failed"),
        ("activity_failed", "malformed_tool_result"),
    ]
    final = (await runtime.get(sid)).events[-1]["text"]
    assert "answered int" in final
    assert "did not answer within 0.1s" in final
    assert "MCP server exited" in final


async def test_invalid_tool_calls_are_answered_with_errors(make_runtime: Any) -> None:
    tools = RecordingTools(echo=lambda text: text)
    model = ScriptedModel(
        once_then_answer(
            ("echo", "{not json"), ("nosuch", {}), ("echo", "[1, 2]"), ("echo", {"text": "fine"})
        )
    )
    runtime = await make_runtime([agent(binding("echo"))], model, tools)
    sid = await runtime.create_session("default", "helper", message="go")
    assert await runtime.wait(sid) == "waiting_input"
    assert await errors_of(runtime, sid) == [
        ("error", "invalid_tool_call"),
        ("error", "unknown_tool"),
        ("error", "invalid_tool_call"),
    ]
    assert tools.calls == [("toolbox", "echo", {"text": "fine"}, f"{sid}:2")]
    answer = (await runtime.get(sid)).events[-1]["text"]
    assert "not JSON" in answer
    assert "'nosuch', which this agent does not have" in answer


async def test_a_failing_model_is_retried_then_fails_the_session(make_runtime: Any) -> None:
    model = ScriptedModel(lambda _m: RuntimeError("upstream 503"))
    runtime = await make_runtime([agent()], model, RecordingTools())
    sid = await runtime.create_session("default", "helper", message="go")
    assert await runtime.wait(sid) == "failed"
    assert len(model.requests) == 3
    view = await runtime.get(sid)
    failed = [(e["step"], e["attempt"]) for e in view.events if e["kind"] == "activity_failed"]
    assert failed == [(1, 1), (1, 2), (1, 3)]  # one step, tried three times
    assert not [e for e in view.events if e["kind"] == "activity_scheduled"]
    assert "upstream 503" in view.events[-1]["reason"]


async def test_a_malformed_model_response_is_retried(make_runtime: Any) -> None:
    answers = iter([{"choices": []}, reply("ok")])
    runtime = await make_runtime(
        [agent()], ScriptedModel(lambda _m: next(answers)), RecordingTools()
    )
    sid = await runtime.create_session("default", "helper", message="go")
    assert await runtime.wait(sid) == "waiting_input"
    assert await errors_of(runtime, sid) == [("activity_failed", "bad_model_response")]


async def test_a_runaway_loop_ends_at_max_steps(make_runtime: Any) -> None:
    tools = RecordingTools(poll=lambda: "not yet")
    model = ScriptedModel(lambda _m: tool_calls(("poll", {})))
    runtime = await make_runtime([agent(binding("poll"), max_steps=7)], model, tools)
    sid = await runtime.create_session("default", "helper", message="go")
    assert await runtime.wait(sid) == "terminated"
    view = await runtime.get(sid)
    assert view.events[-1]["reason"] == "limit reached: maxSteps 7"
    assert view.session.summary["steps"] == 7
    assert len(tools.calls) + len(model.requests) == 7


async def test_token_and_cost_limits_end_sessions(make_runtime: Any) -> None:
    tools = RecordingTools(poll=lambda: "again")
    model = ScriptedModel(lambda _m: tool_calls(("poll", {}), tokens=400))
    runtime = await make_runtime([agent(binding("poll"), max_tokens=1000)], model, tools)
    sid = await runtime.create_session("default", "helper", message="go")
    assert await runtime.wait(sid) == "terminated"
    assert (await runtime.get(sid)).events[-1][
        "reason"
    ] == "limit reached: maxTokens 1000 (used 1200)"

    def costly(_messages: list[dict[str, Any]]) -> Any:
        answer = tool_calls(("poll", {}))
        answer["usage"]["cost_usd"] = 0.02
        return answer

    runtime2 = await make_runtime(
        [agent(binding("poll"), name="c", max_cost_usd=0.05)], ScriptedModel(costly), tools
    )
    sid2 = await runtime2.create_session("default", "c", message="go")
    assert await runtime2.wait(sid2) == "terminated"
    assert "maxCostUSD 0.05" in (await runtime2.get(sid2)).events[-1]["reason"]


async def test_a_session_past_its_duration_expires(make_runtime: Any) -> None:
    async def slow() -> str:
        await asyncio.sleep(0.3)
        return "done"

    tools = RecordingTools(slow=slow)
    model = ScriptedModel(lambda _m: tool_calls(("slow", {})))
    runtime = await make_runtime([agent(binding("slow"), max_duration_seconds=0.2)], model, tools)
    sid = await runtime.create_session("default", "helper", message="go")
    assert await runtime.wait(sid) == "expired"
    assert "maxDurationSeconds 0.2" in (await runtime.get(sid)).events[-1]["reason"]
    idle = await runtime.create_session("default", "helper")
    await asyncio.sleep(0.4)  # its wake-up comes due; the maintenance loop expires it
    assert (await runtime.get(idle)).session.state == "expired"


async def test_sessions_beyond_the_agent_concurrency_limit_queue(make_runtime: Any) -> None:
    running = 0
    peak = 0

    async def work() -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return "ok"

    tools = RecordingTools(work=work)
    model = ScriptedModel(once_then_answer(("work", {})))
    runtime = await make_runtime([agent(binding("work"), max_concurrent_sessions=2)], model, tools)
    ids = [await runtime.create_session("default", "helper", message="go") for _ in range(6)]
    assert [await runtime.wait(sid) for sid in ids] == ["waiting_input"] * 6
    assert peak == 2


async def test_gc_deletes_ended_sessions_past_retention(make_runtime: Any, journal: Any) -> None:
    runtime = await make_runtime(
        [agent(memory="none")],
        ScriptedModel(lambda _m: reply("x")),
        RecordingTools(),
        retention_seconds=0.2,
    )
    done = await runtime.create_session("default", "helper", message="go")
    assert await runtime.wait(done) == "completed"
    waiting = await runtime.create_session("default", "helper")
    assert await runtime.gc() == 0
    await asyncio.sleep(0.3)
    assert await runtime.gc() == 1
    assert await journal.get(done) is None
    assert await journal.read_events(done) == []
    assert await journal.get(waiting) is not None


async def test_activity_deadlines_fire_once_and_forget_finished_calls() -> None:
    from corral.agents.activities import Deadlines

    deadlines = Deadlines(resolution=0.01)

    async def quick() -> bool:
        task = deadlines.arm(60)
        await asyncio.sleep(0)
        return deadlines.disarm(task)

    assert await asyncio.gather(*(quick() for _ in range(1000))) == [False] * 1000
    assert deadlines.armed == 0

    async def hangs() -> str:
        task = deadlines.arm(0.05)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "timed out" if deadlines.disarm(task) else "cancelled"
        return "finished"

    assert await asyncio.wait_for(hangs(), 2) == "timed out"
    assert deadlines.armed == 0
    deadlines.close()
