"""A2A: cards that the a2a-sdk types accept, the JSON-RPC endpoint (1.0 SendMessage and 0.3
message/send, bad requests answered as JSON-RPC errors), and one agent calling another as a
tool with the delegation chain nested in the callee's tokens."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from a2a.compat.v0_3 import conversions as v03
from a2a.types import AgentCard
from google.protobuf import json_format

from agents.conftest import reply, tool_calls, tool_results
from corral.agents.a2a import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    TASK_NOT_FOUND,
    A2AEndpoint,
    A2ATurn,
    agent_audience,
    agent_card,
    card_json,
)
from corral.agents.a2a_tools import (
    A2AToolCaller,
    RuntimeSessions,
    agent_tool_binding,
    send_message_request,
    tool_result,
)
from corral.agents.authority import Delegation, SessionCredentials
from corral.agents.authority_gate import PolicyToolGate
from corral.agents.config import AgentConfig, ToolBinding
from corral.agents.seams import SessionInfo
from corral.identity import KeyRing, Principal, TokenIssuer, Verifier
from corral.identity.jose import b64url_decode
from corral.policy import PolicyEngine

HELPER = "spiffe://corral.local/ns/default/agent/helper"
PLANNER = "spiffe://corral.local/ns/research/agent/planner"


def claims(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = orjson.loads(b64url_decode(token.split(".")[1]))
    return payload


def search_tool() -> ToolBinding:
    return ToolBinding("search", "web", "search", "Search the web", risk="read")


def test_card_round_trips_through_the_a2a_types() -> None:
    helper = AgentConfig(
        "default", "helper", "chat", "secret instructions", {"search": search_tool()}
    )
    card = agent_card(
        helper, base_url="https://corral.example", description="Finds things", labels={"team": "s"}
    )
    body = card_json(card)
    parsed = json_format.ParseDict(body, AgentCard())
    assert parsed == card
    assert body["name"] == "default/helper"
    assert body["supportedInterfaces"] == [
        {
            "url": "https://corral.example/v1/agents/default/helper/a2a",
            "protocolBinding": "JSONRPC",
            "protocolVersion": version,
        }
        for version in ("1.0", "0.3")
    ]
    assert [skill["id"] for skill in body["skills"]] == ["search"]
    assert body["skills"][0]["tags"] == ["risk=read", "tool=web", "team=s"]
    scheme = body["securitySchemes"]["corral-workload-jwt"]["httpAuthSecurityScheme"]
    assert scheme["bearerFormat"] == "JWT"
    assert HELPER in scheme["description"]
    assert "secret instructions" not in orjson.dumps(body).decode()
    # The 0.3 shape (pydantic) validates too.
    compat = v03.to_compat_agent_card(card)
    assert compat.name == "default/helper"
    assert compat.skills[0].id == "search"
    assert compat.url == "https://corral.example/v1/agents/default/helper/a2a"


def test_card_without_tools_has_a_chat_skill_and_refuses_a_bad_url() -> None:
    bare = AgentConfig("default", "bare", "chat")
    assert [skill.id for skill in agent_card(bare, base_url="http://x").skills] == ["chat"]
    with pytest.raises(ValueError, match="base_url"):
        agent_card(bare, base_url="corral.example")


class FixedSessions:
    """Answers every message with the text reversed; remembers what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str | None, Delegation]] = []
        self.message_ids: list[str | None] = []

    async def send(
        self,
        namespace: str,
        agent: str,
        text: str,
        *,
        session_id: str | None,
        delegation: Delegation,
        message_id: str | None = None,
    ) -> A2ATurn:
        self.message_ids.append(message_id)
        self.calls.append((namespace, agent, text, session_id, delegation))
        return A2ATurn(session_id or "sess-1", len(self.calls), "waiting_input", text[::-1])


CALLER = Principal("user", "alice", act=(HELPER,))


async def test_send_message_starts_a_session_with_the_callers_delegation() -> None:
    sessions = FixedSessions()
    endpoint = A2AEndpoint(sessions)
    response = await endpoint.handle("research", "planner", send_message_request("abc"), CALLER)
    task = response["result"]["task"]
    assert task["id"] == "sess-1/1"
    assert task["contextId"] == "sess-1"
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert task["status"]["message"]["parts"] == [{"text": "cba"}]
    assert sessions.calls == [("research", "planner", "abc", None, Delegation("alice", (HELPER,)))]
    again = send_message_request("de", context_id="sess-1")
    await endpoint.handle("research", "planner", again, CALLER)
    assert sessions.calls[-1][3] == "sess-1"


async def test_a2a_0_3_message_send_is_answered_in_its_shape() -> None:
    endpoint = A2AEndpoint(FixedSessions())
    request = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "message/send",
        "params": {
            "message": {
                "kind": "message",
                "messageId": "m1",
                "role": "user",
                "parts": [{"kind": "text", "text": "hello"}],
            }
        },
    }
    response = await endpoint.handle("research", "planner", request, CALLER)
    assert response["id"] == 7
    result = response["result"]
    assert result["kind"] == "task"
    assert result["status"]["state"] == "completed"
    assert result["status"]["message"]["parts"][0]["text"] == "olleh"


@pytest.mark.parametrize(
    ("request_body", "code", "says"),
    [
        ([1, 2], INVALID_REQUEST, "JSON-RPC 2.0"),
        ({"jsonrpc": "2.0", "id": 1, "method": "tasks/get"}, METHOD_NOT_FOUND, "tasks/get"),
        ({"jsonrpc": "2.0", "id": 1, "method": "SendMessage"}, INVALID_PARAMS, "params"),
        (
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "SendMessage",
                "params": {"message": {"parts": []}},
            },
            INVALID_PARAMS,
            "text part",
        ),
        (
            {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"nope": 1}},
            INVALID_PARAMS,
            "nope",
        ),
        (
            {"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {}}},
            INVALID_PARAMS,
            "params.message",
        ),
    ],
)
async def test_bad_requests_are_json_rpc_errors(request_body: Any, code: int, says: str) -> None:
    response = await A2AEndpoint(FixedSessions()).handle("ns", "a", request_body, CALLER)
    assert response["error"]["code"] == code
    assert says in response["error"]["message"]


def test_tool_result_reads_answers_and_errors() -> None:
    ok = {
        "result": {
            "task": {
                "contextId": "s",
                "status": {"state": "TASK_STATE_COMPLETED", "message": {"parts": [{"text": "hi"}]}},
            }
        }
    }
    assert tool_result(ok)["isError"] is False
    assert orjson.loads(tool_result(ok)["content"][0]["text"])["answer"] == "hi"
    failed = {"result": {"task": {"status": {"state": "TASK_STATE_FAILED"}}}}
    assert tool_result(failed)["isError"] is True
    refused = tool_result({"error": {"code": TASK_NOT_FOUND, "message": "no session x"}})
    assert refused["isError"] is True
    assert "no session x" in refused["content"][0]["text"]


class TokenModel:
    """One model for both agents: the helper asks the planner, the planner answers."""

    def __init__(self) -> None:
        self.tokens: dict[str, list[str]] = {"helper": [], "planner": []}

    async def __call__(self, request: dict[str, Any], token: str) -> Any:
        messages = request["messages"]
        who = "planner" if "You plan." in messages[0]["content"] else "helper"
        self.tokens[who].append(token)
        if who == "planner":
            return reply("plan: " + messages[-1]["content"])
        results = tool_results(messages)
        if not results:
            return tool_calls(("ask_planner", {"message": "a trip"}))
        return reply("helper got " + results[-1])


async def test_one_agent_calls_another_with_the_chain_in_its_tokens(make_runtime: Any) -> None:
    ring = KeyRing.generate("EdDSA")
    issuer = TokenIssuer(ring, "corral:test")
    credentials = SessionCredentials(issuer)
    ask = agent_tool_binding("research/planner", timeout_seconds=20)
    helper = AgentConfig("default", "helper", "chat", "You help.", {ask.function: ask})
    planner = AgentConfig("research", "planner", "chat", "You plan.")

    def verify(token: str, audience: str) -> Principal:
        return (
            Verifier(ring.jwks(), issuer="corral:test", audience=audience).verify(token).principal
        )

    sessions = RuntimeSessions(wait_seconds=15)
    tools = A2AToolCaller(A2AEndpoint(sessions), verify)
    engine = PolicyEngine(
        [
            {
                "kind": "Policy",
                "metadata": {"name": "agents-may-ask-the-planner"},
                "spec": {
                    "cedar": 'permit(principal, action == Action::"call", '
                    'resource == Tool::"agent:research/planner");'
                },
            }
        ]
    )
    model = TokenModel()
    runtime = await make_runtime(
        [helper, planner], model, tools, tokens=credentials, gate=PolicyToolGate(engine)
    )
    sessions.runtime = runtime
    session_id = await runtime.create_session("default", "helper", message="go", user="alice")
    assert await runtime.wait(session_id, seconds=20) == "waiting_input"
    events = (await runtime.get(session_id)).events
    final = [e["text"] for e in events if e["kind"] == "final"]
    assert len(final) == 1
    assert "plan: a trip" in final[0]
    assert model.tokens["planner"]
    planner_token = claims(model.tokens["planner"][0])
    assert planner_token["sub"] == "alice"
    assert planner_token["act"] == {"sub": PLANNER, "act": {"sub": HELPER}}
    assert planner_token["aud"] == "corral-gateway"
    helper_token = claims(model.tokens["helper"][0])
    assert helper_token["act"] == {"sub": HELPER}
    # The planner's session remembers who started it.
    (planner_session,), _ = await runtime.list_sessions("research", "planner")
    created = (await runtime.get(planner_session.id)).events[0]
    assert (created["user"], list(created["actors"])) == ("alice", [HELPER])


async def test_a_session_is_continued_only_by_its_own_caller(make_runtime: Any) -> None:
    planner = AgentConfig("research", "planner", "chat", "You plan.")
    model = TokenModel()
    sessions = RuntimeSessions(wait_seconds=10)
    runtime = await make_runtime([planner], model, A2AToolCaller(A2AEndpoint(sessions), _no_verify))
    sessions.runtime = runtime
    endpoint = A2AEndpoint(sessions)
    first = await endpoint.handle("research", "planner", send_message_request("one"), CALLER)
    context = first["result"]["task"]["contextId"]
    second = await endpoint.handle(
        "research", "planner", send_message_request("two", context_id=context), CALLER
    )
    assert second["result"]["task"]["id"] == f"{context}/2"
    assert second["result"]["task"]["status"]["message"]["parts"] == [{"text": "plan: two"}]
    mallory = Principal("user", "mallory", act=(HELPER,))
    stolen = await endpoint.handle(
        "research", "planner", send_message_request("three", context_id=context), mallory
    )
    assert stolen["error"]["code"] == TASK_NOT_FOUND
    elsewhere = await endpoint.handle(
        "default", "other", send_message_request("x", context_id=context), CALLER
    )
    assert elsewhere["error"]["code"] == TASK_NOT_FOUND
    unknown = await endpoint.handle("research", "nobody", send_message_request("x"), CALLER)
    assert unknown["error"]["code"] == INVALID_PARAMS
    assert agent_audience("research", "planner") == PLANNER


def _no_verify(token: str, audience: str) -> Principal:
    raise AssertionError(f"no agent tools in this test ({token[:8]}, {audience})")


class EchoMcp:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def call(
        self, tool: str, name: str, arguments: dict[str, Any], idempotency_key: str, token: str
    ) -> Any:
        self.calls.append((tool, name))
        return {"content": [{"type": "text", "text": f"{arguments} {idempotency_key} {token}"}]}


async def test_agent_tool_calls_are_checked_before_anything_is_sent() -> None:
    ring = KeyRing.generate("EdDSA")
    credentials = SessionCredentials(TokenIssuer(ring, "corral:test"))
    sessions = FixedSessions()
    mcp = EchoMcp()

    def verify(token: str, audience: str) -> Principal:
        return (
            Verifier(ring.jwks(), issuer="corral:test", audience=audience).verify(token).principal
        )

    caller = A2AToolCaller(A2AEndpoint(sessions), verify, mcp)
    helper = AgentConfig("default", "helper", "chat")
    session = SessionInfo("s1", "default", "helper", user="alice")
    token = credentials.tool_token(session, helper, "agent:research/planner")
    assert claims(token)["aud"] == PLANNER
    answer = await caller.call(
        "agent:research/planner", "send_message", {"message": "hi"}, "s1:3", token
    )
    assert answer["isError"] is False
    assert orjson.loads(answer["content"][0]["text"])["answer"] == "ih"
    assert sessions.calls[-1][:3] == ("research", "planner", "hi")
    assert sessions.calls[-1][4] == Delegation("alice", (HELPER,))
    assert sessions.message_ids == ["s1:3"]  # the idempotency key travels as the messageId
    bad = [
        ("send_message", {}, token, "arguments.message"),
        ("send_message", {"message": "x", "context": 3}, token, "arguments.context"),
        ("other", {"message": "x"}, token, "one function"),
        ("send_message", {"message": "x"}, "not-a-token", "not for agent"),
        (
            "send_message",
            {"message": "x"},
            credentials.tool_token(session, helper, "files"),
            "not for agent",
        ),
    ]
    for name, arguments, presented, says in bad:
        result = await caller.call("agent:research/planner", name, arguments, "k", presented)
        assert result["isError"] is True
        assert says in result["content"][0]["text"]
    assert len(sessions.calls) == 1
    forwarded = await caller.call("files", "read_file", {"path": "/a"}, "s1:4", "tok")
    assert mcp.calls == [("files", "read_file")]
    assert "s1:4" in forwarded["content"][0]["text"]
    with pytest.raises(LookupError, match="no MCP tool caller"):
        await A2AToolCaller(A2AEndpoint(sessions), verify).call("files", "x", {}, "k", "t")
