"""In a process with both roles the Tool controller lists each Tool through the agents runtime's
MCP connections: one stdio server per Tool serves the listing and the agents' calls, a call
that resolves the Tool from the store does not restart what the controller started, the
controller still hears of every connection change, and stopping the controller (leadership
lost, shutdown) leaves the shared servers running for the agents' calls."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import corral.api.kinds.tool  # noqa: F401  (registers the kind until the package does)
from agents.processes import children_running
from corral.agents.mcp_client import McpToolCaller
from corral.controllers.tool import add_tools, store_tool_configs
from corral.controlplane import Manager, get_condition
from corral.store import open_store

from .helpers import Plane

WEATHER = Path(__file__).parent.parent / "agents" / "mcp_servers" / "weather.py"


def servers_of_this_process() -> list[int]:
    """Pids of the weather.py servers this test process spawned (its children)."""
    return children_running(os.getpid(), WEATHER)


def pid_of(result: Any) -> int:
    return int(result["content"][0]["text"])


@pytest.fixture
async def shared(tmp_path: Path) -> AsyncIterator[tuple[Plane, McpToolCaller, Any]]:
    store = await open_store(f"sqlite:///{tmp_path / 'corral.db'}")
    # The agents runtime's connections, resolving Tools from the store on every call.
    tools = McpToolCaller(
        tmp_path / "tool-logs", resolve=store_tool_configs(store), resolve_seconds=0
    )
    manager = Manager(store, identity="test", registry=CollectorRegistry())
    assert add_tools(manager, tmp_path / "unused", tools=tools) is tools
    stop = asyncio.Event()
    running = asyncio.create_task(manager.run(stop))
    try:
        yield Plane(store, None), tools, (stop, running)  # type: ignore[arg-type]  # no supervisor
    finally:
        stop.set()
        await running
        await tools.close()
        await store.close()


async def test_one_server_per_tool_serves_the_listing_and_the_calls(
    shared: tuple[Plane, McpToolCaller, Any],
) -> None:
    control, tools, (stop, manager) = shared
    heard: list[str] = []
    tools.add_listener(heard.append)
    await control.apply(
        {
            "apiVersion": "corral.dev/v1alpha1",
            "kind": "Tool",
            "metadata": {"name": "weather"},
            "spec": {"mcp": {"stdio": {"command": sys.executable, "args": [str(WEATHER)]}}},
        }
    )

    def listed(obj: dict[str, Any]) -> bool:
        ready = get_condition(obj.get("status"), "Ready")
        return bool(ready) and ready["status"] == "True"

    obj = await control.wait_for("Tool", "weather", listed, within=30)
    assert "pid" in {entry["name"] for entry in obj["status"]["tools"]}
    connection = tools.get("default/weather")
    assert connection is not None
    assert connection.connected
    assert "default/weather" in heard  # every listener hears the connection's changes

    # An agent's call resolves the Tool from the store: an equal config, the same server.
    server = pid_of(await tools.call("default/weather", "pid", {}, "s:1", ""))
    assert servers_of_this_process() == [server]
    assert pid_of(await tools.call("weather", "pid", {}, "s:2", "")) == server
    assert tools.get("default/weather") is connection
    assert connection.restarts == 0

    # The controller stops (as when it loses leadership): the agents still need the server.
    stop.set()
    await manager
    assert connection.connected
    assert pid_of(await tools.call("weather", "pid", {}, "s:3", "")) == server
    assert servers_of_this_process() == [server]
