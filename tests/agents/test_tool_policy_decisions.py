"""Every tool call is a Cedar decision: permit, deny (with the deciding policy), approval needed
for write/destructive unless a policy waives it; the tool's name, risk, arguments and the
session's user are in context."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from corral.agents.authority_gate import PolicyToolGate
from corral.agents.config import AgentConfig, Approvals, ToolBinding
from corral.agents.seams import SessionInfo
from corral.api.kinds.policy import cedar_problems
from corral.policy import PolicyEngine, object_entity, principal_entity
from corral.policy.tool_calls import decide_tool_call

AGENT = "spiffe://corral.local/ns/default/agent/helper"
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def policy(name: str, cedar: str) -> dict[str, Any]:
    assert cedar_problems(cedar) == [], cedar
    return {
        "kind": "Policy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"cedar": cedar},
    }


def tool(name: str = "files", risk: str = "write", **labels: str) -> dict[str, Any]:
    return {
        "kind": "Tool",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"risk": risk},
    }


def binding(function: str, risk: str = "read", tool: str = "files") -> ToolBinding:
    return ToolBinding(function, tool, function, risk=risk)  # type: ignore[arg-type]


def helper(*tools: ToolBinding, approvals: Approvals | None = None) -> AgentConfig:
    return AgentConfig(
        "default",
        "helper",
        "chat",
        tools={t.function: t for t in tools},
        approvals=approvals or Approvals(),
    )


CALL_ANY = 'permit(principal, action == Action::"call", resource);'


def gate(*cedar: str, **tools: dict[str, Any]) -> PolicyToolGate:
    engine = PolicyEngine([policy(f"p{index}", text) for index, text in enumerate(cedar)])
    entities = {("default", obj["metadata"]["name"]): object_entity(obj) for obj in tools.values()}
    return PolicyToolGate(engine, entities, now=lambda: MONDAY_10)


SESSION = SessionInfo("s1", "default", "helper", user="alice")


async def test_no_policy_denies_and_says_so() -> None:
    read = binding("read_file")
    verdict = await gate().decide(SESSION, helper(read), read, {"path": "/tmp/a"})
    assert verdict.effect == "deny"
    assert verdict.reason == "call of read_file on Tool default/files denied: no policy permits it"


async def test_read_tools_are_allowed_once_permitted() -> None:
    read = binding("read_file")
    verdict = await gate(CALL_ANY).decide(SESSION, helper(read), read, {"path": "/tmp/a"})
    assert verdict.effect == "allow"
    assert "default/p0#1" in verdict.reason


async def test_forbid_names_the_deciding_statement() -> None:
    read = binding("read_file")
    checker = gate(
        CALL_ANY,
        '@id("no-etc")\nforbid(principal, action == Action::"call", resource)\n'
        '  when { context.arguments.hasTag("path")\n'
        '         && context.arguments.getTag("path") like "/etc/*" };',
    )
    denied = await checker.decide(SESSION, helper(read), read, {"path": "/etc/passwd"})
    assert denied.effect == "deny"
    assert "denied by default/p1#1 (forbid @id('no-etc'))" in denied.reason
    assert checker.last is not None
    assert checker.last.policies == ("default/p1",)
    allowed = await checker.decide(SESSION, helper(read), read, {"path": "/tmp/x"})
    assert allowed.effect == "allow"


@pytest.mark.parametrize("risk", ["write", "destructive"])
async def test_write_and_destructive_need_approval_by_default(risk: str) -> None:
    risky = binding("delete_file", risk)
    checker = gate(CALL_ANY)
    # The Agent asks for nothing: the platform's default still holds.
    verdict = await checker.decide(
        SESSION, helper(risky, approvals=Approvals(require=frozenset())), risky, {"path": "/tmp/a"}
    )
    assert verdict.effect == "approve"
    assert verdict.reason == (
        f"{risk} tool delete_file needs approval (no policy permits call_without_approval)"
    )


async def test_a_permit_of_call_without_approval_waives_it() -> None:
    write = binding("write_file", "write")
    checker = gate(
        CALL_ANY,
        '@id("tmp-writes")\n'
        'permit(principal, action == Action::"call_without_approval", resource is Tool)\n'
        '  when { context has tool && context.tool == "write_file"\n'
        '         && context.arguments.hasTag("path")\n'
        '         && context.arguments.getTag("path") like "/tmp/*" };',
    )
    waived = await checker.decide(SESSION, helper(write), write, {"path": "/tmp/a"})
    assert waived.effect == "allow"
    assert "tmp-writes" in waived.reason
    assert checker.last is not None
    assert checker.last.approval == "waived"
    still = await checker.decide(SESSION, helper(write), write, {"path": "/home/a"})
    assert still.effect == "approve"


async def test_a_forbid_of_call_without_approval_makes_read_tools_wait() -> None:
    read = binding("read_file")
    checker = gate(
        CALL_ANY,
        'permit(principal, action == Action::"call_without_approval", resource);',
        '@id("secrets-need-a-person")\n'
        'forbid(principal, action == Action::"call_without_approval", resource)\n'
        '  when { resource.hasTag("secret") };',
        vault=tool("vault", "read", secret="yes"),
    )
    plain = await checker.decide(SESSION, helper(read), read, {})
    assert plain.effect == "allow"
    vault = binding("read_secret", tool="vault")
    verdict = await checker.decide(SESSION, helper(vault), vault, {"name": "db"})
    assert verdict.effect == "approve"
    assert "secrets-need-a-person" in verdict.reason


async def test_context_carries_tool_risk_user_and_arguments() -> None:
    read = binding("search")
    checker = gate(
        'permit(principal == Agent::"' + AGENT + '", action == Action::"call", resource)\n'
        '  when { context has tool && context.tool == "search" && context has risk\n'
        '         && context.risk == "read" && context has user && context.user == "alice"\n'
        '         && context.argument_names.contains("q")\n'
        '         && context.arguments.hasTag("limit")\n'
        '         && context.arguments.getTag("limit") == "5" };'
    )
    ok = await checker.decide(SESSION, helper(read), read, {"q": "cedar", "limit": 5})
    assert ok.effect == "allow"
    bob = SessionInfo("s2", "default", "helper", user="bob")
    assert (
        await checker.decide(bob, helper(read), read, {"q": "cedar", "limit": 5})
    ).effect == "deny"
    assert (
        await checker.decide(SESSION, helper(read), read, {"q": "x", "limit": 6})
    ).effect == "deny"


async def test_tool_labels_and_risk_come_from_the_tool_entity() -> None:
    read = binding("read_file")
    checker = gate(
        'permit(principal in Namespace::"default", action == Action::"call", resource)\n'
        '  when { resource.hasTag("team") && resource.getTag("team") == "search"\n'
        '         && resource.risk == "write" };',
        files=tool("files", "write", team="search"),
    )
    assert (await checker.decide(SESSION, helper(read), read, {})).effect == "allow"
    # A Tool not known to the gate has no labels: label policies fail closed.
    other = binding("read_file", tool="unknown")
    assert (await checker.decide(SESSION, helper(other), other, {})).effect == "deny"


async def test_delegating_agents_are_the_principals_act() -> None:
    read = binding("read_file")
    planner = "spiffe://corral.local/ns/research/agent/planner"
    checker = gate(
        'permit(principal, action == Action::"call", resource)\n'
        f'  when {{ principal.act.contains("{planner}") }};'
    )
    delegated = SessionInfo("s1", "default", "helper", user="alice", actors=("research/planner",))
    assert (await checker.decide(delegated, helper(read), read, {})).effect == "allow"
    assert (await checker.decide(SESSION, helper(read), read, {})).effect == "deny"


def test_decide_tool_call_refuses_a_non_tool_resource() -> None:
    agent = principal_entity("workload", AGENT, namespace="default")
    endpoint = object_entity(
        {"kind": "Endpoint", "metadata": {"name": "chat", "namespace": "default"}}
    )
    with pytest.raises(ValueError, match="not Endpoint"):
        decide_tool_call(
            PolicyEngine().snapshot,
            agent,
            endpoint,
            call_id="c",
            tool="t",
            risk="read",
            arguments={},
            now=MONDAY_10,
        )


async def test_policy_engine_updates_are_seen_by_the_next_call() -> None:
    read = binding("read_file")
    engine = PolicyEngine()
    checker = PolicyToolGate(engine, now=lambda: MONDAY_10)
    assert (await checker.decide(SESSION, helper(read), read, {})).effect == "deny"
    engine.update(policies=[policy("open", CALL_ANY)])
    assert (await checker.decide(SESSION, helper(read), read, {})).effect == "allow"


async def test_every_decision_reaches_the_audit_hook() -> None:
    seen: list[tuple[str, str, str, tuple[str, ...]]] = []
    engine = PolicyEngine([policy("open", CALL_ANY)])
    checker = PolicyToolGate(
        engine,
        now=lambda: MONDAY_10,
        on_decision=lambda session, bound, verdict: seen.append(
            (session.id, bound.function, verdict.effect, verdict.policies)
        ),
    )
    write = binding("write_file", "write")
    await checker.decide(SESSION, helper(write), write, {})
    assert seen == [("s1", "write_file", "approve", ("default/open",))]
