"""Agents through a real ``corral up``: the sessions API over HTTP, ``corral agent run``, and
``model: "agent:helper"`` with the official ``openai`` client. The agent thinks with an
``openai``-runtime Endpoint in front of a fake upstream, through the gateway as itself: a Cedar
Policy lets the agent invoke that Endpoint, another lets a team's key use the agent, and a key
without it is refused before anything runs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import openai
import pytest

from .fake_upstream import FakeUpstream, fake_upstream
from .helpers import CORRAL, Corral, endpoint, is_ready, manifest, sse_events

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

UPSTREAM_KEY = "sk-agents-upstream"
HELPER = "spiffe://corral.local/ns/default/agent/helper"
POLICIES = f"""
permit (principal == Agent::"{HELPER}", action == Action::"invoke",
        resource == Endpoint::"default/agent-chat");
permit (principal in Team::"default/ops", action == Action::"invoke",
        resource == Agent::"{HELPER}");
"""


def create_key(server: Corral, team: str) -> str:
    argv = [CORRAL, "keys", "create", "--team", team, "--create-team"]
    argv += ["--server", server.url, "--token", server.token]
    created = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Corral, FakeUpstream]]:
    root = tmp_path_factory.mktemp("corral-agents")
    server = Corral(root / "state", root / "logs").start()
    try:
        with fake_upstream(UPSTREAM_KEY) as upstream:
            server.wait_ready()
            server.apply(
                manifest("Secret", "up-key", {"type": "api-key", "data": {"apiKey": UPSTREAM_KEY}}),
                endpoint(
                    "agent-chat",
                    {"up-model": 100},
                    runtime={"type": "openai", "baseURL": upstream.base_url, "secretRef": "up-key"},
                ),
                manifest("Policy", "agents", {"cedar": POLICIES}),
                manifest("Agent", "helper", {"instructions": "Be brief.", "model": "agent-chat"}),
            )
            server.wait_for("endpoints", "agent-chat", is_ready)
            yield server, upstream
    finally:
        code = server.stop()
    assert code == 0, server.stderr


def test_a_session_runs_over_http_and_its_model_call_goes_through_the_gateway(
    agents: tuple[Corral, FakeUpstream],
) -> None:
    server, upstream = agents
    key = create_key(server, "ops")
    base = f"{server.url}/v1/agents/default/helper/sessions"
    with httpx.Client(headers={"authorization": f"Bearer {key}"}, timeout=60) as http:
        created = http.post(base, json={})
        assert created.status_code == 201, created.text
        session = created.json()["id"]
        turn = http.post(f"{base}/{session}/messages", json={"message": "hello"})
        assert turn.status_code == 200, turn.text
        events = sse_events(turn.text)
        final = [data for name, data in events if name == "final"]
        assert final == [{"session": session, "text": "upstream says: hello "}]
        assert events[-1][1]["state"] == "waiting_input"
        journal = http.get(f"{base}/{session}").json()
        assert journal["session"]["summary"]["tokens"] > 0
    # The upstream saw the agent's request (instructions first), with corral's upstream key.
    sent = upstream.chats()[-1]
    assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_corral_agent_run_prints_the_answer(agents: tuple[Corral, FakeUpstream]) -> None:
    server, _upstream = agents
    argv = [CORRAL, "agent", "run", "helper", "what is up"]
    argv += ["--server", server.url, "--token", server.token]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "upstream says: what is up" in result.stdout
    assert result.stderr.startswith("session ")


def test_an_agent_answers_the_openai_client_as_a_model(agents: tuple[Corral, FakeUpstream]) -> None:
    server, _upstream = agents
    with server.openai() as client:
        answer = client.chat.completions.create(
            model="agent:helper", messages=[{"role": "user", "content": "ping"}]
        )
    assert answer.choices[0].message.content == "upstream says: ping "


def test_a_key_no_policy_lets_use_the_agent_is_refused(
    agents: tuple[Corral, FakeUpstream],
) -> None:
    server, upstream = agents
    before = len(upstream.chats())
    key = create_key(server, "strangers")
    with httpx.Client(headers={"authorization": f"Bearer {key}"}, timeout=60) as http:
        refused = http.post(f"{server.url}/v1/agents/default/helper/sessions", json={})
    assert refused.status_code == 403
    assert 'no Policy permits Action::"invoke"' in refused.json()["error"]["message"]
    with server.openai(api_key=key) as client, pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(
            model="agent:helper", messages=[{"role": "user", "content": "ping"}]
        )
    assert len(upstream.chats()) == before
