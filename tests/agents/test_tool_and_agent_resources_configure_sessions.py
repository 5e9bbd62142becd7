"""Agent and Tool specs are validated strictly (field named), compile into the runtime's
AgentConfig (functions from the Tool's listed MCP tools, risks, allow lists; missing Tools left
out), and a session runs a real stdio MCP server through them: the tool sees the session's
idempotency key, a crash is journaled as a tool error and the session goes on."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agents.conftest import ScriptedModel, reply, tool_calls, tool_results
from corral.agents.mcp_client import McpToolCaller
from corral.agents.mcp_config import server_config
from corral.api.kinds.agent import AgentSpec
from corral.api.kinds.tool import ToolSpec
from corral.server.agent_directory import compile_agent

SERVERS = Path(__file__).parent / "mcp_servers"
STDIO = {"stdio": {"command": "weather-mcp"}}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"mcp": {}}, "exactly one of mcp.stdio and mcp.http"),
        ({"mcp": {**STDIO, "http": {"url": "http://x/mcp"}}}, "exactly one of mcp.stdio"),
        ({"mcp": {"http": {"url": "ftp://x"}}}, "not an http:// or https:// URL"),
        ({"mcp": STDIO, "risk": "dangerous"}, "'read', 'write' or 'destructive'"),
        ({"mcp": STDIO, "toolRisks": {"rm": "nuke"}}, "toolRisks.rm"),
        ({"mcp": STDIO, "timeoutSeconds": 0}, "greater than 0"),
        ({"mcp": STDIO, "colour": "red"}, "colour\n  Extra inputs are not permitted"),
        ({"mcp": {"stdio": {"command": ""}}}, "at least 1 character"),
        (
            {"mcp": STDIO, "credentials": [{"secretRef": "s", "key": "k", "header": "X-K"}]},
            "a stdio server takes credentials as env",
        ),
        (
            {
                "mcp": {"http": {"url": "https://x/mcp"}},
                "credentials": [{"secretRef": "s", "key": "k", "env": "K"}],
            },
            "an http server takes credentials as header",
        ),
        (
            {"mcp": STDIO, "credentials": [{"secretRef": "s", "key": "k"}]},
            "set exactly one of env, header",
        ),
        (
            {"mcp": STDIO, "credentials": [{"secretRef": "Bad_Name", "key": "k", "env": "K"}]},
            "not a valid Secret name",
        ),
        (
            {"mcp": STDIO, "credentials": [{"secretRef": "s", "key": "k", "env": "1X"}]},
            "not a valid environment variable name",
        ),
        (
            {
                "mcp": STDIO,
                "credentials": [
                    {"secretRef": "s", "key": "k", "env": "A"},
                    {"secretRef": "t", "key": "k", "env": "A"},
                ],
            },
            "credentials[1]: 'a' is injected twice",
        ),
    ],
)
def test_tool_specs_are_checked(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ToolSpec.model_validate(spec)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "model\n  Field required"),
        ({"model": "chat", "limits": {"maxSteps": 0}}, "limits.maxSteps"),
        ({"model": "chat", "limits": {"maxDurationSeconds": -1}}, "limits.maxDurationSeconds"),
        ({"model": "chat", "limits": {"maxConcurrentSessions": 0}}, "maxConcurrentSessions"),
        ({"model": "chat", "limits": {"maxCostUSD": 0}}, "limits.maxCostUSD"),
        ({"model": "chat", "limits": {"maxSteps": 5, "max_steps": 5}}, "Extra inputs"),
        ({"model": "chat", "tools": ["Files!"]}, "tools[0]: 'Files!' is not a Tool reference"),
        ({"model": "chat", "tools": ["a", "a"]}, "tools[1]: 'a' is listed twice"),
        ({"model": "chat", "tools": [{"tool": "a", "allow": []}]}, "at least 1 item"),
        ({"model": "chat", "memory": "forever"}, "'none' or 'conversation'"),
        ({"model": "chat", "approvals": {"require": ["Write"]}}, "risk levels are lower case"),
        ({"model": "chat", "budget": "My Budget"}, "not a valid Budget name"),
    ],
)
def test_agent_specs_are_checked(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AgentSpec.model_validate(spec)
    assert message in str(caught.value)


def tool_object(name: str, listed: list[str], namespace: str = "default", **spec: Any) -> Any:
    return {
        "kind": "Tool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"mcp": STDIO, **spec},
        "status": {
            "tools": [
                {"name": n, "description": f"{n} it", "inputSchema": {"type": "object"}}
                for n in listed
            ]
        },
    }


def agent_object(**spec: Any) -> Any:
    return {"kind": "Agent", "metadata": {"name": "helper", "namespace": "default"}, "spec": spec}


def test_an_agent_config_is_built_from_its_tools() -> None:
    tools = {
        ("default", "files"): tool_object(
            "files", ["read_file", "delete_file", "search"], risk="write",
            toolRisks={"read_file": "read", "delete_file": "destructive"}, timeoutSeconds=7,
        ),
        ("research", "wiki"): tool_object("wiki", ["search", "page.get"], namespace="research"),
        ("default", "pending"): tool_object("pending", []),
    }  # fmt: skip
    spec = {
        "model": "chat",
        "instructions": "help",
        "tools": [
            "files",
            {"tool": "research/wiki", "allow": ["search", "page.get", "edit"]},
            "pending",
            "absent",
            "agent:planner",
        ],
        "limits": {"maxSteps": 9, "maxConcurrentSessions": 3},
        "approvals": {"require": ["destructive", "search"], "timeoutSeconds": 60},
        "memory": "none",
    }
    config = compile_agent(agent_object(**spec), tools)
    assert sorted(config.tools) == [
        "ask_planner", "delete_file", "files__search", "page_get", "read_file", "wiki__search",
    ]  # fmt: skip
    assert config.tools["read_file"].risk == "read"
    assert config.tools["delete_file"].risk == "destructive"
    assert config.tools["files__search"].risk == "write"
    assert config.tools["files__search"].tool == "default/files"
    assert config.tools["wiki__search"].tool == "research/wiki"
    assert config.tools["page_get"].name == "page.get"
    assert config.tools["read_file"].timeout_seconds == 7
    assert config.tools["ask_planner"].tool == "agent:planner"
    assert config.limits.max_steps == 9
    assert config.limits.max_concurrent_sessions == 3
    assert config.approvals.needed(config.tools["delete_file"])
    assert not config.approvals.needed(config.tools["read_file"])
    assert config.memory == "none"


@pytest.fixture
async def mcp(tmp_path: Path) -> AsyncIterator[McpToolCaller]:
    caller = McpToolCaller(tmp_path / "logs", ping_interval=0.5, backoff=(0.1, 1.0))
    try:
        yield caller
    finally:
        await caller.close()


async def test_a_session_calls_a_real_mcp_server(make_runtime: Any, mcp: McpToolCaller) -> None:
    spec = {"mcp": {"stdio": {"command": sys.executable, "args": [str(SERVERS / "weather.py")]}}}
    connection = await mcp.ensure(
        server_config("default", "weather", ToolSpec.model_validate(spec), lambda _name: None)
    )
    tool = {
        "kind": "Tool",
        "metadata": {"name": "weather", "namespace": "default"},
        "spec": spec,
        "status": {"tools": await connection.list_tools()},
    }
    agent = compile_agent(
        agent_object(model="chat", tools=[{"tool": "weather", "allow": ["get_weather", "crash"]}]),
        {("default", "weather"): tool},
    )
    assert sorted(agent.tools) == ["crash", "get_weather"]

    def script(messages: list[dict[str, Any]]) -> Any:
        results = tool_results(messages)
        if not results:
            return tool_calls(("get_weather", {"city": "Paris"}))
        if len(results) == 1:
            return tool_calls(("crash", {}))
        return reply(f"{len(results)} results")

    runtime = await make_runtime([agent], ScriptedModel(script), mcp)
    sid = await runtime.create_session("default", "helper", message="weather?")
    assert await runtime.wait(sid) == "waiting_input"
    events = (await runtime.get(sid)).events
    completed = [e for e in events if e["kind"] == "activity_completed"]
    failed = [e for e in events if e["kind"] == "activity_failed"]
    assert f"sunny in Paris; key={sid}:2" in str(completed[1])
    assert len(failed) == 1
    assert "closed the connection during crash" in str(failed[0])
    assert events[-1]["kind"] == "final"
    assert events[-1]["text"] == "2 results"
