"""An Agent on the real quickstart model (SmolLM2 through llama.cpp, ``chatml-function-calling``)
calls a real MCP server over stdio, through ``corral up``: the first model call of the turn is
made to call ``get_weather`` (``toolChoice``), the tool runs with the session's idempotency key,
and the model answers. A write tool waits for an approval given over the sessions API. Cedar
decides both the agent's model calls and its tool calls.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .helpers import DIGEST, SOURCE, Corral, is_ready, manifest, sse_events

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

WEATHER = Path(__file__).resolve().parents[1] / "agents" / "mcp_servers" / "weather.py"
AGENT = "spiffe://corral.local/ns/default/agent/{}"
AGENTS = " || ".join(f'principal == Agent::"{AGENT.format(n)}"' for n in ("forecaster", "alerter"))
POLICIES = f"""
permit (principal, action == Action::"invoke", resource == Endpoint::"default/tools-chat")
  when {{ {AGENTS} }};
permit (principal, action == Action::"call", resource == Tool::"default/weather")
  when {{ {AGENTS} }};
"""


def agent(name: str, allow: list[str], tool_choice: str) -> dict[str, Any]:
    return manifest(
        "Agent",
        name,
        {
            "model": "tools-chat",
            "instructions": "You report the weather. Use the tools.",
            "tools": [{"tool": "weather", "allow": allow}],
            "toolChoice": tool_choice,
            "limits": {"maxSteps": 6, "maxDurationSeconds": 240},
        },
    )


@pytest.fixture(scope="module")
def corral(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    root = tmp_path_factory.mktemp("corral-agent-tools")
    server = Corral(root / "state", root / "logs").start()
    try:
        server.wait_ready()
        server.apply(
            {
                "apiVersion": "corral.dev/v1alpha1",
                "kind": "Model",
                "metadata": {"name": "smollm2-135m"},
                "spec": {
                    "source": SOURCE,
                    "digest": DIGEST,
                },
            },
            manifest(
                "Endpoint",
                "tools-chat",
                {
                    "models": [{"model": "smollm2-135m"}],
                    "runtime": {
                        "type": "llamacpp",
                        "options": {"n_ctx": 2048, "chat_format": "chatml-function-calling"},
                    },
                },
            ),
            manifest(
                "Tool",
                "weather",
                {
                    "mcp": {"stdio": {"command": sys.executable, "args": [str(WEATHER)]}},
                    "risk": "read",
                    "toolRisks": {"crash": "write"},
                },
            ),
            manifest("Policy", "agents", {"cedar": POLICIES}),
            agent("forecaster", ["get_weather"], "get_weather"),
            agent("alerter", ["crash", "get_weather"], "crash"),
        )
        server.wait_for("endpoints", "tools-chat", is_ready)
        server.wait_for("tools", "weather", _listed)
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.stderr


def _listed(obj: dict[str, Any]) -> bool:
    return any(
        tool.get("name") == "get_weather" for tool in (obj.get("status") or {}).get("tools") or []
    )


def turn(server: Corral, agent_name: str, path: str, body: dict[str, Any]) -> list[Any]:
    base = f"{server.url}/v1/agents/default/{agent_name}/sessions"
    headers = {"authorization": f"Bearer {server.token}"}
    with httpx.Client(headers=headers, timeout=300) as http:
        answer = http.post(f"{base}{path}", json=body)
    assert answer.status_code == 200, answer.text
    return sse_events(answer.text)


def new_session(server: Corral, agent_name: str) -> str:
    headers = {"authorization": f"Bearer {server.token}"}
    base = f"{server.url}/v1/agents/default/{agent_name}/sessions"
    created = httpx.post(base, json={}, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_the_real_model_calls_the_mcp_tool_and_answers(corral: Corral) -> None:
    session = new_session(corral, "forecaster")
    events = turn(
        corral, "forecaster", f"/{session}/messages", {"message": "What is the weather in Paris?"}
    )
    names = [name for name, _ in events]
    assert "tool_call" in names, events
    call = next(data for name, data in events if name == "tool_call")
    assert call["function"] == "get_weather"
    result = next(data for name, data in events if name == "tool_result")
    text = result["content"]
    # The MCP server saw the session's idempotency key: session id and step.
    assert text.startswith("sunny in ")
    assert f"key={session}:{call['step']}" in text
    assert "final" in names, [e for e in events if e[0] in ("error", "state", "final")]
    assert events[-1][1]["state"] == "waiting_input"


def test_a_write_tool_waits_for_approval_and_a_denial_reaches_the_model(corral: Corral) -> None:
    session = new_session(corral, "alerter")
    events = turn(corral, "alerter", f"/{session}/messages", {"message": "Crash it."})
    asked = [data for name, data in events if name == "approval_needed"]
    assert asked, events
    assert asked[0]["function"] == "crash"
    assert events[-1][1]["state"] == "waiting_approval"
    # Denied: the tool never runs; the model hears why and the session goes on.
    resumed = turn(
        corral,
        "alerter",
        f"/{session}/approvals/{asked[0]['step']}",
        {"approve": False, "reason": "not today"},
    )
    assert "tool_result" not in [name for name, _ in resumed]
    assert resumed[-1][1]["state"] in ("waiting_input", "completed", "failed"), resumed
    headers = {"authorization": f"Bearer {corral.token}"}
    journal = httpx.get(
        f"{corral.url}/v1/agents/default/alerter/sessions/{session}", headers=headers, timeout=30
    ).json()
    kinds = [event["kind"] for event in journal["events"]]
    assert "approval_requested" in kinds
    assert "approval_decided" in kinds
