"""An Agent's approvals.require combines with Cedar: named tools always wait, risk rules wait
unless a policy waives them, and in a running session a denial is journaled and handed to the
model as the tool's error while an approval parks the session."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agents.conftest import RecordingTools, ScriptedModel, kinds, reply, tool_calls, tool_results
from corral.agents.authority import SessionCredentials
from corral.agents.authority_gate import PolicyToolGate
from corral.agents.config import AgentConfig, Approvals, ToolBinding
from corral.agents.seams import SessionInfo
from corral.identity import KeyRing, TokenIssuer
from corral.policy import PolicyEngine

MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SESSION = SessionInfo("s1", "default", "helper", user="alice")
CALL_ANY = 'permit(principal, action == Action::"call", resource);'
WAIVE_ALL = 'permit(principal, action == Action::"call_without_approval", resource);'


def policies(*cedar: str) -> PolicyEngine:
    return PolicyEngine(
        [
            {"kind": "Policy", "metadata": {"name": f"p{i}"}, "spec": {"cedar": text}}
            for i, text in enumerate(cedar)
        ]
    )


def binding(function: str, risk: str = "read") -> ToolBinding:
    return ToolBinding(function, "toolbox", function, risk=risk)  # type: ignore[arg-type]


def helper(*tools: ToolBinding, require: set[str] | None = None) -> AgentConfig:
    approvals = Approvals() if require is None else Approvals(require=frozenset(require))
    return AgentConfig(
        "default",
        "helper",
        "chat",
        "You help.",
        tools={t.function: t for t in tools},
        approvals=approvals,
    )


async def decide(engine: PolicyEngine, agent: AgentConfig, function: str) -> tuple[str, str]:
    gate = PolicyToolGate(engine, now=lambda: MONDAY_10)
    verdict = await gate.decide(SESSION, agent, agent.tools[function], {})
    return verdict.effect, verdict.reason


async def test_a_named_tool_waits_even_when_a_policy_waives_approval() -> None:
    read = binding("read_file")
    effect, reason = await decide(
        policies(CALL_ANY, WAIVE_ALL), helper(read, require={"read_file"}), "read_file"
    )
    assert (effect, reason) == ("approve", "agent helper requires approval for read_file")


async def test_a_risk_rule_waits_unless_waived() -> None:
    read = binding("read_file")
    agent = helper(read, require={"read"})
    assert (await decide(policies(CALL_ANY), agent, "read_file")) == (
        "approve",
        "agent helper requires approval of read tools",
    )
    effect, _ = await decide(policies(CALL_ANY, WAIVE_ALL), agent, "read_file")
    assert effect == "allow"


async def test_default_rules_waive_like_the_platform_default() -> None:
    write = binding("write_file", "write")
    assert (await decide(policies(CALL_ANY), helper(write), "write_file"))[0] == "approve"
    assert (await decide(policies(CALL_ANY, WAIVE_ALL), helper(write), "write_file"))[0] == "allow"


async def test_a_denial_beats_every_approval_rule() -> None:
    write = binding("write_file", "write")
    effect, reason = await decide(policies(), helper(write, require={"write_file"}), "write_file")
    assert effect == "deny"
    assert "no policy permits it" in reason


async def test_in_a_session_a_denial_is_journaled_and_returned_to_the_model(
    make_runtime: Any,
) -> None:
    read, delete = binding("read_file"), binding("delete_file", "destructive")
    engine = policies(
        CALL_ANY,
        '@id("never-delete")\nforbid(principal, action == Action::"call", resource)\n'
        '  when { context has tool && context.tool == "delete_file" };',
    )

    def script(messages: list[dict[str, Any]]) -> Any:
        results = tool_results(messages)
        if not results:
            return tool_calls(("delete_file", {"path": "/tmp/a"}))
        return reply(f"done: {results[-1]}")

    model = ScriptedModel(script)
    tools = RecordingTools(read_file=lambda **_: "x", delete_file=lambda **_: "gone")
    credentials = SessionCredentials(TokenIssuer(KeyRing.generate("EdDSA"), "corral:test"))
    runtime = await make_runtime(
        [helper(read, delete)], model, tools, tokens=credentials, gate=PolicyToolGate(engine)
    )
    session_id = await runtime.create_session("default", "helper", message="clean up", user="alice")
    assert await runtime.wait(session_id, seconds=10) == "waiting_input"
    assert tools.calls == []  # the tool never ran
    events = (await runtime.get(session_id)).events
    denied = [e for e in events if e["kind"] == "error"]
    assert denied
    assert denied[0]["code"] == "denied"
    assert "never-delete" in denied[0]["message"]
    told = tool_results(model.requests[-1]["messages"])
    assert told
    assert "never-delete" in told[-1]


async def test_in_a_session_write_tools_park_for_approval(make_runtime: Any) -> None:
    write = binding("write_file", "write")

    def script(messages: list[dict[str, Any]]) -> Any:
        if not tool_results(messages):
            return tool_calls(("write_file", {"path": "/tmp/a"}))
        return reply("written")

    tools = RecordingTools(write_file=lambda **_: "ok")
    runtime = await make_runtime(
        [helper(write)], ScriptedModel(script), tools, gate=PolicyToolGate(policies(CALL_ANY))
    )
    session_id = await runtime.create_session("default", "helper", message="write it")
    assert await runtime.wait(session_id, seconds=10) == "waiting_approval"
    assert "approval_requested" in await kinds(runtime, session_id)
    assert tools.calls == []
