"""The sessions API drives the runtime over HTTP: create, stream a turn as server-sent events,
approve a tool call, read the journal, list, terminate; callers see only their own sessions and
bad requests get clear 4xx answers."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from agents.conftest import RecordingTools, ScriptedModel, agent, binding, reply, tool_calls
from corral.agents.runtime import AgentRuntime
from corral.identity import Principal
from corral.server.agents_api import SessionsApi

ALICE = Principal("team-key", "default/alice-key", team="ops", namespace="default")
BOB = Principal("team-key", "default/bob-key", team="ops", namespace="default")
TOKENS: dict[str, Principal | bool] = {"alice": ALICE, "bob": BOB, "admin": True}
BASE = "/v1/agents/default/helper/sessions"


def authenticate(token: str | None) -> Principal | bool | None:
    return TOKENS.get(token or "")


def authorize(principal: Principal | None, namespace: str, agent_name: str) -> str | None:
    if agent_name == "secret-agent" and principal is not None:
        return f"{principal.id} may not use agent {namespace}/{agent_name}"
    return None


def weather_then_answer(messages: list[dict[str, Any]]) -> Any:
    if not any(m["role"] == "tool" for m in messages):
        return tool_calls(("get_weather", {"city": "Paris"}))
    return reply("It is sunny in Paris.")


@pytest.fixture
async def served(make_runtime: Any) -> tuple[AgentRuntime, RecordingTools]:
    tools = RecordingTools(get_weather=lambda city: f"sunny in {city}")
    runtime = await make_runtime(
        [agent(binding("get_weather"), binding("send_mail", risk="write"))],
        ScriptedModel(weather_then_answer),
        tools,
    )
    return runtime, tools


def client_for(runtime: AgentRuntime | None, token: str | None = "alice") -> httpx.AsyncClient:
    api = SessionsApi(lambda: runtime, authenticate, authorize)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://corral", headers=headers
    )


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith(":")]
        if not lines:
            continue
        name = lines[0].removeprefix("event: ")
        events.append((name, orjson.loads(lines[1].removeprefix("data: "))))
    return events


async def test_a_turn_streams_its_steps_and_ends_with_the_answer(
    served: tuple[AgentRuntime, RecordingTools],
) -> None:
    runtime, tools = served
    async with client_for(runtime) as client:
        created = await client.post(BASE, json={})
        assert created.status_code == 201
        session = created.json()["id"]
        assert created.json()["state"] == "waiting_input"

        turn = await client.post(f"{BASE}/{session}/messages", json={"message": "Weather?"})
        assert turn.status_code == 200
        assert turn.headers["content-type"].startswith("text/event-stream")
        events = sse_events(turn.text)
        names = [name for name, _ in events]
        assert {"tool_call", "tool_result", "final"} <= set(names)
        final = next(data for name, data in events if name == "final")
        assert final["session"] == session
        assert "sunny in Paris" in orjson.dumps(final).decode()
        assert events[-1] == ("state", {"session": session, "state": "waiting_input"})
        assert [call[1:3] for call in tools.calls] == [("get_weather", {"city": "Paris"})]

        journal = (await client.get(f"{BASE}/{session}")).json()
        kinds = [event["kind"] for event in journal["events"]]
        assert kinds[0] == "session_created"
        assert journal["events"][0]["user"] == ALICE.id
        assert journal["session"]["state"] == "waiting_input"


async def test_a_write_tool_waits_for_an_approval_given_over_http(make_runtime: Any) -> None:
    tools = RecordingTools(send_mail=lambda to: f"sent to {to}")

    def mail_then_done(messages: list[dict[str, Any]]) -> Any:
        if not any(m["role"] == "tool" for m in messages):
            return tool_calls(("send_mail", {"to": "bob@example.org"}))
        return reply("Done.")

    runtime = await make_runtime(
        [agent(binding("send_mail", risk="write"))], ScriptedModel(mail_then_done), tools
    )
    async with client_for(runtime) as client:
        session = (await client.post(BASE, json={})).json()["id"]
        turn = await client.post(f"{BASE}/{session}/messages", json={"message": "Mail Bob"})
        events = sse_events(turn.text)
        needed = next(data for name, data in events if name == "approval_needed")
        assert events[-1][1]["state"] == "waiting_approval"
        assert tools.calls == []

        wrong = await client.post(
            f"{BASE}/{session}/approvals/{needed['step'] + 5}", json={"approve": True}
        )
        assert wrong.status_code == 409
        assert "waits for approval of step" in wrong.json()["error"]["message"]
        bad = await client.post(
            f"{BASE}/{session}/approvals/{needed['step']}", json={"approve": "yes"}
        )
        assert bad.status_code == 400

        resumed = await client.post(
            f"{BASE}/{session}/approvals/{needed['step']}?stream=false",
            json={"approve": True, "reason": "ok by me"},
        )
        assert resumed.status_code == 200
        assert resumed.json()["session"]["state"] == "waiting_input"
        assert [call[1] for call in tools.calls] == ["send_mail"]


async def test_sessions_are_private_to_their_creator_but_the_admin_sees_all(
    served: tuple[AgentRuntime, RecordingTools],
) -> None:
    runtime, _tools = served
    async with client_for(runtime, "alice") as alice, client_for(runtime, "bob") as bob:
        mine = (await alice.post(BASE, json={})).json()["id"]
        theirs = (await bob.post(BASE, json={})).json()["id"]
        assert (await bob.get(f"{BASE}/{mine}")).status_code == 404
        assert (await bob.delete(f"{BASE}/{mine}")).status_code == 404
        listed = (await alice.get(BASE)).json()
        assert [item["id"] for item in listed["items"]] == [mine]
    async with client_for(runtime, "admin") as admin:
        everything = {item["id"] for item in (await admin.get(BASE)).json()["items"]}
        assert everything == {mine, theirs}
        ended = await admin.delete(f"{BASE}/{theirs}")
        assert ended.json() == {"id": theirs, "state": "terminated"}


@pytest.mark.parametrize(
    ("method", "path", "body", "token", "status", "code"),
    [
        ("post", BASE, {}, None, 401, "invalid_api_key"),
        ("post", BASE, {}, "mallory", 401, "invalid_api_key"),
        ("post", "/v1/agents/default/secret-agent/sessions", {}, "alice", 403, "permission_denied"),
        ("post", "/v1/agents/default/nobody/sessions", {}, "alice", 404, "agent_not_found"),
        ("post", BASE, {"message": 7}, "alice", 400, "invalid_message"),
        ("post", BASE, b"{not json", "alice", 400, "invalid_json"),
        ("post", BASE, [1, 2], "alice", 400, "invalid_json"),
        ("get", BASE + "?limit=0", None, "alice", 400, "invalid_limit"),
        ("get", BASE + "/s-none", None, "alice", 404, "session_not_found"),
        ("post", BASE + "/s-none/messages", {"message": "hi"}, "alice", 404, "session_not_found"),
        ("post", BASE + "/s-none/messages", {}, "alice", 400, "invalid_message"),
    ],
)
async def test_bad_requests_get_clear_errors(
    served: tuple[AgentRuntime, RecordingTools],
    method: str,
    path: str,
    body: Any,
    token: str | None,
    status: int,
    code: str,
) -> None:
    runtime, _tools = served
    async with client_for(runtime, token) as client:
        if isinstance(body, bytes):
            response = await client.request(method, path, content=body)
        elif body is None:
            response = await client.request(method, path)
        else:
            response = await client.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_a_message_to_a_session_waiting_for_approval_is_a_conflict(
    make_runtime: Any,
) -> None:
    runtime = await make_runtime(
        [agent(binding("send_mail", risk="write"))],
        ScriptedModel(lambda _m: tool_calls(("send_mail", {"to": "x@example.org"}))),
        RecordingTools(send_mail=lambda to: to),
    )
    async with client_for(runtime) as client:
        session = (await client.post(BASE, json={})).json()["id"]
        await client.post(f"{BASE}/{session}/messages", json={"message": "go"})
        again = await client.post(f"{BASE}/{session}/messages", json={"message": "again"})
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "session_state_conflict"


async def test_a_runtime_still_starting_answers_503() -> None:
    async with client_for(None) as client:
        response = await client.post(BASE, json={})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"
