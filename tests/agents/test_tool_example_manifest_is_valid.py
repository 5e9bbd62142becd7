"""The shipped example (examples/agents/weather.yaml) passes the write gate, configures its
agent, and its Tool's server answers over stdio with the credential injected."""

from __future__ import annotations

import sys
from pathlib import Path

import corral.api.kinds.agent
import corral.api.kinds.tool  # noqa: F401  (registers the kinds until the package does)
from corral.agents.mcp_client import McpToolCaller
from corral.agents.mcp_config import server_config
from corral.api.kinds.tool import ToolSpec
from corral.api.manifest import load_manifests
from corral.api.validation import validate_documents
from corral.server.agent_directory import compile_agent

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "agents" / "weather.yaml"


async def test_the_example_agent_and_tool_are_valid_and_run(tmp_path: Path) -> None:
    documents = load_manifests([str(EXAMPLE)])
    valid, problems = validate_documents((d.body, d.location) for d in documents)
    assert problems == []
    objects = {obj["kind"]: obj for obj, _ in valid}
    assert set(objects) == {"Secret", "Tool", "Agent", "Endpoint", "Policy"}
    spec = ToolSpec.model_validate(objects["Tool"]["spec"])
    assert spec.mcp.stdio is not None
    # The example says `python`; run it with this interpreter, from the repository root.
    stdio = spec.mcp.stdio.model_copy(update={"command": sys.executable, "cwd": str(ROOT)})
    spec = spec.model_copy(update={"mcp": spec.mcp.model_copy(update={"stdio": stdio})})
    data = objects["Secret"]["spec"]["data"]
    caller = McpToolCaller(tmp_path)
    try:
        connection = await caller.ensure(
            server_config(
                "default", "weather", spec, lambda name: data if name == "weather-api" else None
            )
        )
        listed = await connection.list_tools()
        result = await caller.call("weather", "get_weather", {"city": "Paris"}, "s:1", "")
    finally:
        await caller.close()
    assert result["content"][0]["text"] == "It is sunny in Paris (answered with an API key)."
    tool = {**objects["Tool"], "status": {"tools": listed}}
    tool["metadata"] = {**tool["metadata"], "namespace": "default"}
    agent = {
        **objects["Agent"],
        "metadata": {**objects["Agent"]["metadata"], "namespace": "default"},
    }
    config = compile_agent(agent, {("default", "weather"): tool})
    assert sorted(config.tools) == ["get_weather", "set_alert"]
    assert config.tools["set_alert"].risk == "write"
    assert config.approvals.needed(config.tools["set_alert"])
    assert not config.approvals.needed(config.tools["get_weather"])
