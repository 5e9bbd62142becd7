"""Under ``corral up`` (every role in one process) a stdio Tool's MCP server runs once: the Tool
controller lists its tools and the agents runtime calls them through the same supervised
process. An agent (on a scripted upstream, through the gateway) calls the server's ``pid`` tool
and answers with the result; that pid is the one weather.py child of corral.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.processes import children_running
from agents.scripted_upstream import scripted_upstream
from serving.helpers import Corral, endpoint, is_ready, manifest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

WEATHER = Path(__file__).resolve().parent / "mcp_servers" / "weather.py"
AGENT = "spiffe://corral.local/ns/default/agent/pidder"
POLICIES = f"""
permit (principal == Agent::"{AGENT}", action == Action::"invoke",
        resource == Endpoint::"default/pid-chat");
permit (principal == Agent::"{AGENT}", action == Action::"call",
        resource == Tool::"default/weather");
"""


def listed(obj: dict[str, Any]) -> bool:
    return "pid" in {tool.get("name") for tool in (obj.get("status") or {}).get("tools") or []}


@pytest.fixture(scope="module")
def corral(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    root = tmp_path_factory.mktemp("corral-one-server")
    server = Corral(root / "state", root / "logs").start()
    try:
        with scripted_upstream(1, lambda _done: {}, echo_results=True) as upstream:
            server.wait_ready()
            server.apply(
                endpoint(
                    "pid-chat", {"script": 100}, runtime={"type": "openai", "baseURL": upstream}
                ),
                manifest(
                    "Tool",
                    "weather",
                    {"mcp": {"stdio": {"command": sys.executable, "args": [str(WEATHER)]}}},
                ),
                manifest("Policy", "pidder", {"cedar": POLICIES}),
                manifest(
                    "Agent",
                    "pidder",
                    {
                        "model": "pid-chat",
                        "instructions": "Report the pid.",
                        "tools": [{"tool": "weather", "allow": ["pid"]}],
                    },
                ),
            )
            server.wait_for("endpoints", "pid-chat", is_ready)
            server.wait_for("tools", "weather", listed)
            yield server
    finally:
        code = server.stop()
    assert code == 0, server.stderr


def test_the_controller_and_the_agents_share_one_server_per_tool(corral: Corral) -> None:
    assert corral.process is not None
    base = "/v1/agents/default/pidder/sessions"
    created = corral.api().post(base, json={})
    assert created.status_code == 201, created.text
    session = created.json()["id"]
    turn = corral.api().post(f"{base}/{session}/messages?stream=false", json={"message": "pid?"})
    assert turn.status_code == 200, turn.text
    finals = [e["text"] for e in turn.json()["events"] if e["kind"] == "final"]
    assert len(finals) == 1, turn.json()["events"]
    called = int(re.findall(r"\d+", finals[0])[-1])
    assert children_running(corral.process.pid, WEATHER) == [called]
