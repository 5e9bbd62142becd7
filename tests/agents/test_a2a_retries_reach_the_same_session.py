"""An agent's A2A call retried with the same idempotency key (its tool step ran again after a
crash) reaches the session the first attempt started at the callee, and gets that session's
answer: no second session, no second model call. Another key, or another caller with the same
key, starts its own session; a key that is not a corral one is honoured too.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from agents.conftest import reply
from corral.agents.a2a import A2AEndpoint
from corral.agents.a2a_tools import (
    A2AToolCaller,
    RuntimeSessions,
    idempotent_session_id,
    send_message_request,
)
from corral.agents.authority import Delegation, SessionCredentials
from corral.agents.config import AgentConfig
from corral.agents.errors import SessionExists
from corral.agents.runtime import AgentRuntime, new_session_id
from corral.agents.seams import SessionInfo
from corral.identity import KeyRing, Principal, TokenIssuer, Verifier

HELPER = "spiffe://corral.local/ns/default/agent/helper"
PLANNER = AgentConfig("research", "planner", "chat", "You plan.")
HELPER_CONFIG = AgentConfig("default", "helper", "chat", "You help.")


class CountingPlanner:
    """Answers ``plan N: <question>``, N counting the model calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, request: dict[str, Any], token: str) -> Any:  # noqa: ARG002
        self.calls += 1
        return reply(f"plan {self.calls}: {request['messages'][-1]['content']}")


@pytest.fixture
async def planner(make_runtime: Any) -> tuple[AgentRuntime, CountingPlanner, A2AToolCaller, Any]:
    ring = KeyRing.generate("EdDSA")
    credentials = SessionCredentials(TokenIssuer(ring, "corral:test"))

    def verify(token: str, audience: str) -> Principal:
        verifier = Verifier(ring.jwks(), issuer="corral:test", audience=audience)
        return verifier.verify(token).principal

    model = CountingPlanner()
    sessions = RuntimeSessions(wait_seconds=15)
    caller = A2AToolCaller(A2AEndpoint(sessions), verify)
    runtime = await make_runtime([PLANNER, HELPER_CONFIG], model, caller)
    sessions.runtime = runtime

    def token_for(user: str) -> str:
        session = SessionInfo(new_session_id(0), "default", "helper", user=user)
        return credentials.tool_token(session, HELPER_CONFIG, "agent:research/planner")

    return runtime, model, caller, token_for


def answer_of(result: dict[str, Any]) -> dict[str, Any]:
    assert result["isError"] is False, result
    body: dict[str, Any] = orjson.loads(result["content"][0]["text"])
    return body


async def ask(caller: A2AToolCaller, token: str, key: str, message: str = "a trip") -> Any:
    return answer_of(
        await caller.call(
            "agent:research/planner", "send_message", {"message": message}, key, token
        )
    )


async def test_a_retried_call_gets_the_first_calls_session_and_answer(planner: Any) -> None:
    runtime, model, caller, token_for = planner
    token = token_for("alice")
    key = f"{new_session_id(1_700_000_000)}:4"
    first = await ask(caller, token, key)
    assert first == {
        "answer": "plan 1: a trip",
        "context": first["context"],
        "state": "TASK_STATE_COMPLETED",
    }
    again = await ask(caller, token, key)
    assert again == first
    assert model.calls == 1
    sessions, _ = await runtime.list_sessions("research", "planner")
    assert [s.id for s in sessions] == [first["context"]]
    # The callee's session sorts by its caller's time (the key's session id leads).
    assert first["context"][:9] == key[:9]

    # The conversation goes on; a late retry of the first call still gets the first answer.
    follow = answer_of(
        await caller.call(
            "agent:research/planner",
            "send_message",
            {"message": "and back", "context": first["context"]},
            f"{key[:-1]}6",
            token,
        )
    )
    assert follow["answer"] == "plan 2: and back"
    assert await ask(caller, token, key) == first
    assert model.calls == 2


async def test_another_key_or_another_caller_starts_its_own_session(planner: Any) -> None:
    runtime, model, caller, token_for = planner
    key = f"{new_session_id(1_700_000_000)}:2"
    alice = await ask(caller, token_for("alice"), key)
    other_step = await ask(caller, token_for("alice"), f"{key[:-1]}8")
    bob = await ask(caller, token_for("bob"), key)
    assert len({alice["context"], other_step["context"], bob["context"]}) == 3
    assert model.calls == 3
    sessions, _ = await runtime.list_sessions("research", "planner")
    assert len(sessions) == 3


async def test_an_a2a_client_s_own_message_ids_are_honoured(planner: Any) -> None:
    runtime, model, _caller, _token_for = planner
    endpoint = A2AEndpoint(RuntimeSessions(runtime, wait_seconds=15))
    alice = Principal("user", "alice")
    request = send_message_request("lunch?", message_id="3f1c0a2e-client-id")
    first = await endpoint.handle("research", "planner", request, alice)
    second = await endpoint.handle("research", "planner", request, alice)
    assert first["result"] == second["result"]
    assert model.calls == 1
    assert first["result"]["task"]["contextId"] == idempotent_session_id(
        "research", "planner", Delegation("alice", ()), "3f1c0a2e-client-id"
    )


async def test_the_runtime_refuses_a_second_session_with_a_chosen_id(planner: Any) -> None:
    runtime, _model, _caller, _token_for = planner
    chosen = new_session_id(1_700_000_000)
    assert await runtime.create_session("research", "planner", session_id=chosen) == chosen
    with pytest.raises(SessionExists):
        await runtime.create_session("research", "planner", message="again", session_id=chosen)
    view = await runtime.get(chosen)
    assert [event["kind"] for event in view.events] == ["session_created"]
