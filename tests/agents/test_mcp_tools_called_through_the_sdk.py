"""MCP tools through the real SDK: real server processes over stdio and streamable HTTP.

Listing, calls carrying the idempotency key, a hang becoming a timeout, a crash becoming a clear
error and a restart, a malformed answer becoming a clear error, and credentials injected into
the server yet never visible in listings, results or errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.agents.mcp_client import McpToolCaller, ToolCallError
from corral.agents.mcp_config import CredentialError, ServerConfig, server_config
from corral.api.kinds.tool import ToolSpec

SERVERS = Path(__file__).parent / "mcp_servers"
SECRET = "wx-9f3b7c1d-very-secret"


def stdio_spec(script: str, **extra: Any) -> ToolSpec:
    return ToolSpec.model_validate(
        {"mcp": {"stdio": {"command": sys.executable, "args": [str(SERVERS / script)]}}, **extra}
    )


def secrets(data: dict[str, dict[str, str]]) -> Any:
    return lambda name: data.get(name)


@pytest.fixture
async def caller(tmp_path: Path) -> AsyncIterator[McpToolCaller]:
    tools = McpToolCaller(tmp_path / "logs", ping_interval=0.5, backoff=(0.1, 1.0))
    try:
        yield tools
    finally:
        await tools.close()


@pytest.fixture
async def weather(caller: McpToolCaller) -> ServerConfig:
    spec = stdio_spec(
        "weather.py",
        timeoutSeconds=5,
        credentials=[{"secretRef": "wx", "key": "token", "env": "WEATHER_TOKEN"}],
    )
    config = server_config("default", "weather", spec, secrets({"wx": {"token": SECRET}}))
    await caller.ensure(config)
    return config


async def test_tools_are_listed_with_descriptions_and_schemas(
    caller: McpToolCaller, weather: ServerConfig
) -> None:
    connection = caller.get("default/weather")
    assert connection is not None
    listed = {tool["name"]: tool for tool in await connection.list_tools()}
    assert set(listed) == {
        "get_weather", "secret_fingerprint", "leak_secret", "pid", "hang", "crash",
    }  # fmt: skip
    assert listed["get_weather"]["description"].startswith("The weather in a city")
    schema = listed["get_weather"]["inputSchema"]
    assert schema["properties"]["city"]["type"] == "string"
    assert schema["required"] == ["city"]
    assert SECRET not in repr(listed)
    assert SECRET not in repr(weather)


async def test_a_call_carries_the_idempotency_key_in_meta(
    caller: McpToolCaller,
    weather: ServerConfig,  # noqa: ARG001 (starts the server)
) -> None:
    result = await caller.call("weather", "get_weather", {"city": "Paris"}, "s-1:3", "jwt")
    assert result["isError"] is False
    assert result["content"] == [{"type": "text", "text": "sunny in Paris; key=s-1:3"}]


async def test_each_idempotency_key_reaches_the_counting_tool(
    caller: McpToolCaller, tmp_path: Path
) -> None:
    spec = ToolSpec.model_validate(
        {
            "mcp": {
                "stdio": {
                    "command": sys.executable,
                    "args": [str(SERVERS / "counter.py")],
                    "env": {"COUNTER_FILE": str(tmp_path / "keys.txt")},
                }
            }
        }
    )
    await caller.ensure(server_config("team", "counter", spec, secrets({})))
    keys = [f"session-{n}:{step}" for n in range(5) for step in (1, 2)]
    results = await asyncio.gather(
        *(caller.call("team/counter", "count", {"label": "x"}, key, "") for key in keys)
    )
    assert all("counted" in r["content"][0]["text"] for r in results)
    again = await caller.call("team/counter", "count", {"label": "x"}, keys[0], "")
    assert "already counted session-0:1" in again["content"][0]["text"]
    assert sorted((tmp_path / "keys.txt").read_text().split()) == sorted(keys)


async def test_a_hanging_tool_times_out_and_the_server_stays_usable(
    caller: McpToolCaller,
    weather: ServerConfig,  # noqa: ARG001 (starts the server)
) -> None:
    connection = caller.get("weather")
    assert connection is not None
    assert await connection.wait_ready(10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ToolCallError, match=r"hang did not answer within 0\.5s") as caught:
        await connection.call("hang", {}, "s:1", seconds=0.5)
    assert caught.value.reason == "timeout"
    assert loop.time() - started < 3
    result = await connection.call("get_weather", {"city": "Oslo"}, "s:2")
    assert "sunny in Oslo" in result["content"][0]["text"]


async def test_a_crash_is_a_clear_error_and_the_server_is_restarted(
    caller: McpToolCaller,
    weather: ServerConfig,  # noqa: ARG001 (starts the server)
) -> None:
    connection = caller.get("default/weather")
    assert connection is not None
    assert await connection.wait_ready(10)
    with pytest.raises(ToolCallError, match="closed the connection during crash") as caught:
        await caller.call("weather", "crash", {}, "s:1", "")
    assert caught.value.reason == "server_exited"
    assert "crashing on purpose" in str(caught.value)
    result = await caller.call("weather", "get_weather", {"city": "Rome"}, "s:2", "")
    assert "sunny in Rome" in result["content"][0]["text"]
    assert connection.restarts >= 1


async def test_closing_stops_the_server_process(tmp_path: Path) -> None:
    caller = McpToolCaller(tmp_path / "logs")
    await caller.ensure(server_config("default", "w", stdio_spec("weather.py"), secrets({})))
    result = await caller.call("w", "pid", {}, "s:1", "")
    pid = int(result["content"][0]["text"])
    os.kill(pid, 0)  # alive
    await caller.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_malformed_result_is_a_clear_error(caller: McpToolCaller) -> None:
    await caller.ensure(server_config("default", "bad", stdio_spec("malformed.py"), secrets({})))
    connection = caller.get("bad")
    assert connection is not None
    assert [t["name"] for t in await connection.list_tools()] == ["broken"]
    with pytest.raises(ToolCallError, match="broken answered a malformed result") as caught:
        await caller.call("bad", "broken", {}, "s:1", "")
    assert caught.value.reason == "malformed_result"


async def test_credentials_are_injected_but_never_shown(
    caller: McpToolCaller,
    weather: ServerConfig,  # noqa: ARG001 (starts the server)
) -> None:
    fingerprint = await caller.call("weather", "secret_fingerprint", {}, "s:1", "")
    assert fingerprint["content"][0]["text"] == hashlib.sha256(SECRET.encode()).hexdigest()
    leaked = await caller.call("weather", "leak_secret", {}, "s:2", "")
    assert SECRET not in repr(leaked)
    assert leaked["content"][0]["text"] == "the token is ***"
    connection = caller.get("weather")
    assert connection is not None
    assert SECRET not in connection.stderr_tail()
    assert "leaking ***" in connection.stderr_tail()


async def test_a_missing_command_and_a_missing_secret_are_named(caller: McpToolCaller) -> None:
    with pytest.raises(CredentialError, match="Secret default/nope does not exist"):
        server_config(
            "default",
            "w",
            stdio_spec("weather.py", credentials=[{"secretRef": "nope", "key": "k", "env": "K"}]),
            secrets({}),
        )
    with pytest.raises(CredentialError, match="has no key 'k'"):
        server_config(
            "default",
            "w",
            stdio_spec("weather.py", credentials=[{"secretRef": "s", "key": "k", "env": "K"}]),
            secrets({"s": {"other": "v"}}),
        )
    spec = ToolSpec.model_validate({"mcp": {"stdio": {"command": "no-such-mcp-server-xyz"}}})
    connection = await caller.ensure(server_config("default", "gone", spec, secrets({})))
    assert not await connection.wait_ready(1.0)
    assert connection.reason == "CommandNotFound"
    with pytest.raises(ToolCallError, match="not connected \\(CommandNotFound\\)"):
        await caller.call("gone", "x", {}, "s:1", "")
    with pytest.raises(ToolCallError, match="'nowhere' is not configured"):
        await caller.call("nowhere", "x", {}, "s:1", "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def http_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SERVERS / "weather.py"), "--http", str(port)],
        env={"WEATHER_KEY": SECRET, "PATH": "/usr/bin:/bin"},
    )
    try:
        for _ in range(200):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None:
                raise RuntimeError("the HTTP MCP server exited")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.kill()  # its clients are closed already (fixture order); no graceful drain
        process.wait(10)


async def test_streamable_http_with_a_credential_header(
    http_server: str, caller: McpToolCaller
) -> None:
    spec = ToolSpec.model_validate(
        {
            "mcp": {"http": {"url": http_server}},
            "credentials": [{"secretRef": "wx", "key": "k", "header": "X-Weather-Key"}],
        }
    )
    config = server_config("default", "remote", spec, secrets({"wx": {"k": SECRET}}))
    connection = await caller.ensure(config)
    names = {tool["name"] for tool in await connection.list_tools(seconds=20)}
    assert "get_weather" in names
    result = await caller.call("remote", "get_weather", {"city": "Lima"}, "s-9:1", "")
    assert result["content"][0]["text"] == "sunny in Lima; key=s-9:1"

    no_key = ToolSpec.model_validate({"mcp": {"http": {"url": http_server}}})
    refused = await caller.ensure(server_config("default", "nokey", no_key, secrets({})))
    assert not await refused.wait_ready(2.0)
    assert refused.reason == "Unreachable"
    assert "HTTP 401 Unauthorized" in refused.message
    assert SECRET not in refused.message
