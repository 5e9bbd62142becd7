"""The Tool controller connects to real MCP servers, lists their tools into status and says
clearly why a Tool is not Ready (command not found, server exited, unreachable, missing Secret);
a spec change re-lists, a Secret that appears later is picked up; a worker process without the
controller resolves Tools (and their changes) from the store."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

import corral.api.kinds.tool  # noqa: F401  (registers the kind until the package does)
from corral.agents.mcp_client import McpToolCaller, ToolCallError
from corral.controllers.tool import add_tools, store_tool_configs
from corral.controlplane import Manager, get_condition
from corral.store import open_store

from .helpers import Plane

SERVERS = Path(__file__).parent.parent / "agents" / "mcp_servers"
SECRET = "tool-secret-3c1f9e"


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[tuple[Plane, McpToolCaller]]:
    store = await open_store(f"sqlite:///{tmp_path / 'corral.db'}")
    manager = Manager(store, identity="test", registry=CollectorRegistry())
    tools = add_tools(manager, tmp_path / "tool-logs")
    stop = asyncio.Event()
    running = asyncio.create_task(manager.run(stop))
    try:
        yield Plane(store, None), tools  # type: ignore[arg-type]  # no model supervisor here
    finally:
        stop.set()
        await running
        await tools.close()
        await store.close()


def tool(name: str, mcp: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Tool",
        "metadata": {"name": name},
        "spec": {"mcp": mcp, **spec},
    }


def stdio(script: str, **extra: Any) -> dict[str, Any]:
    return {"stdio": {"command": sys.executable, "args": [str(SERVERS / script)], **extra}}


def secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Secret",
        "metadata": {"name": name},
        "spec": {"data": data},
    }


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    found = get_condition(obj.get("status"), type_)
    return dict(found) if found else {}


def ready(obj: dict[str, Any]) -> bool:
    return condition(obj, "Ready").get("status") == "True"


async def test_a_stdio_tool_is_listed_without_its_credentials(
    plane: tuple[Plane, McpToolCaller],
) -> None:
    control, _ = plane
    creds = [{"secretRef": "wx", "key": "token", "env": "WEATHER_TOKEN"}]
    await control.apply(
        secret("wx", token=SECRET), tool("weather", stdio("weather.py"), credentials=creds)
    )
    obj = await control.wait_for("Tool", "weather", ready, within=30)
    listed = {entry["name"]: entry for entry in obj["status"]["tools"]}
    assert "get_weather" in listed
    assert listed["get_weather"]["inputSchema"]["required"] == ["city"]
    assert listed["get_weather"]["description"].startswith("The weather in a city")
    assert condition(obj, "Connected")["status"] == "True"
    assert obj["status"]["transport"] == "stdio"
    assert SECRET.encode() not in orjson.dumps(obj["status"])


async def test_a_spec_change_relists(plane: tuple[Plane, McpToolCaller], tmp_path: Path) -> None:
    control, _ = plane
    await control.apply(tool("t", stdio("weather.py")))
    await control.wait_for("Tool", "t", ready, within=30)
    counter = stdio("counter.py", env={"COUNTER_FILE": str(tmp_path / "keys")})
    await control.apply(tool("t", counter))
    obj = await control.wait_for(
        "Tool", "t", lambda o: [t["name"] for t in o["status"].get("tools", [])] == ["count"], 30
    )
    assert ready(obj)


async def test_a_missing_command_is_named(plane: tuple[Plane, McpToolCaller]) -> None:
    control, _ = plane
    await control.apply(tool("gone", {"stdio": {"command": "no-such-mcp-server-xyz"}}))
    obj = await control.wait_for(
        "Tool", "gone", lambda o: condition(o, "Connected").get("reason") == "CommandNotFound", 30
    )
    assert "'no-such-mcp-server-xyz' was not found on PATH" in condition(obj, "Ready")["message"]
    assert not ready(obj)


async def test_a_server_that_exits_is_reported_with_its_stderr(
    plane: tuple[Plane, McpToolCaller],
) -> None:
    control, _ = plane
    dies = {
        "stdio": {
            "command": sys.executable,
            "args": [
                "-c",
                "import sys; print('config file missing', file=sys.stderr); sys.exit(2)",
            ],
        }
    }
    await control.apply(tool("dies", dies))
    obj = await control.wait_for(
        "Tool", "dies", lambda o: condition(o, "Connected").get("reason") == "ServerExited", 30
    )
    assert "config file missing" in condition(obj, "Connected")["message"]


async def test_a_missing_secret_then_its_arrival(plane: tuple[Plane, McpToolCaller]) -> None:
    control, tools = plane
    creds = [{"secretRef": "late", "key": "token", "env": "WEATHER_TOKEN"}]
    await control.apply(tool("w", stdio("weather.py"), credentials=creds))
    obj = await control.wait_for(
        "Tool", "w", lambda o: condition(o, "Ready").get("reason") == "SecretNotFound", 30
    )
    assert "Secret default/late does not exist" in condition(obj, "Ready")["message"]
    await control.apply(secret("late", token=SECRET))
    await control.wait_for("Tool", "w", ready, within=30)
    result = await tools.call("default/w", "secret_fingerprint", {}, "s:1", "")
    assert result["isError"] is False


async def test_an_unreachable_http_server_is_named(plane: tuple[Plane, McpToolCaller]) -> None:
    control, _ = plane
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once the socket is closed
    await control.apply(tool("remote", {"http": {"url": f"http://127.0.0.1:{port}/mcp"}}))
    obj = await control.wait_for(
        "Tool", "remote", lambda o: condition(o, "Connected").get("reason") == "Unreachable", 30
    )
    assert f"127.0.0.1:{port}" in condition(obj, "Connected")["message"]
    assert obj["status"]["transport"] == "http"


async def test_a_worker_without_the_controller_resolves_tools_from_the_store(
    plane: tuple[Plane, McpToolCaller], tmp_path: Path
) -> None:
    control, _ = plane
    worker = McpToolCaller(
        tmp_path / "worker-logs", resolve=store_tool_configs(control.store), resolve_seconds=0
    )
    try:
        first = stdio("counter.py", env={"COUNTER_FILE": str(tmp_path / "first")})
        await control.apply(tool("count", first))
        await worker.call("default/count", "count", {"label": "a"}, "s:1", "")
        assert (tmp_path / "first").read_text().split() == ["s:1"]
        second = stdio("counter.py", env={"COUNTER_FILE": str(tmp_path / "second")})
        await control.apply(tool("count", second))  # the next call sees the new spec
        await worker.call("count", "count", {"label": "b"}, "s:2", "")
        assert (tmp_path / "second").read_text().split() == ["s:2"]
        creds = [{"secretRef": "absent", "key": "k", "env": "K"}]
        await control.apply(tool("count", second, credentials=creds))
        with pytest.raises(ToolCallError, match="Secret default/absent does not exist"):
            await worker.call("count", "count", {"label": "c"}, "s:3", "")
        await control.store.delete("Tool", "default", "count")
        with pytest.raises(ToolCallError, match="'count' is not configured here"):
            await worker.call("count", "count", {"label": "d"}, "s:4", "")
    finally:
        await worker.close()
