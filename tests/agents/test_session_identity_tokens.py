"""Session credentials: one audience per token, RFC 8693 act chains, refresh before expiry, and
the gateway's own verifier accepting the model token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from corral.agents.authority import SessionCredentials, delegation_of
from corral.agents.config import AgentConfig
from corral.agents.seams import SessionInfo
from corral.identity import InvalidToken, KeyRing, TokenIssuer, Verifier
from corral.identity.jose import b64url_decode
from corral.policy import PolicyEngine
from corral.server.access_feed import AccessFeed
from corral.server.workload_identity import GATEWAY_AUDIENCE, TRUST_DOMAIN
from corral.store.urls import open_store

ISSUER = "corral:test"
AGENT = "spiffe://corral.local/ns/default/agent/helper"
PLANNER = "spiffe://corral.local/ns/research/agent/planner"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def claims(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = orjson.loads(b64url_decode(token.split(".")[1]))
    return payload


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate("EdDSA", max_token_ttl=3600)


@pytest.fixture
def credentials(ring: KeyRing, clock: Clock) -> SessionCredentials:
    return SessionCredentials(
        TokenIssuer(ring, ISSUER, clock=clock), ttl=300, refresh_before=60, clock=clock
    )


def helper() -> AgentConfig:
    return AgentConfig("default", "helper", "chat")


def test_model_token_is_for_the_gateway_and_acts_for_the_user(
    credentials: SessionCredentials,
) -> None:
    session = SessionInfo("s1", "default", "helper", user="alice")
    token = claims(credentials.model_token(session, helper()))
    assert token["aud"] == GATEWAY_AUDIENCE
    assert token["iss"] == ISSUER
    assert token["sub"] == "alice"
    assert token["act"] == {"sub": AGENT}
    assert token["sid"] == "s1"
    assert token["exp"] - token["iat"] == 300


def test_without_a_user_the_agent_is_the_subject(credentials: SessionCredentials) -> None:
    token = claims(credentials.model_token(SessionInfo("s1", "default", "helper"), helper()))
    assert token["sub"] == AGENT
    assert "act" not in token


def test_each_tool_gets_its_own_audience(credentials: SessionCredentials) -> None:
    session = SessionInfo("s1", "default", "helper", user="alice")
    files = claims(credentials.tool_token(session, helper(), "files"))
    shared = claims(credentials.tool_token(session, helper(), "platform/search"))
    assert files["aud"] == "spiffe://corral.local/ns/default/tool/files"
    assert shared["aud"] == "spiffe://corral.local/ns/platform/tool/search"
    assert files["jti"] != shared["jti"]
    assert files["act"] == {"sub": AGENT}


def test_agent_to_agent_delegation_nests_the_chain(credentials: SessionCredentials) -> None:
    # alice asked research/planner, which handed the task to default/helper.
    session = SessionInfo("s2", "default", "helper", user="alice", actors=("research/planner",))
    token = claims(credentials.model_token(session, helper()))
    assert token["sub"] == "alice"
    assert token["act"] == {"sub": AGENT, "act": {"sub": PLANNER}}
    # No user: the outermost agent is the subject.
    headless = SessionInfo("s3", "default", "helper", actors=(PLANNER,))
    token = claims(credentials.agent_token(headless, helper(), "research/reviewer"))
    assert token["sub"] == PLANNER
    assert token["act"] == {"sub": AGENT}
    assert token["aud"] == "spiffe://corral.local/ns/research/agent/reviewer"


def test_tokens_are_reused_then_refreshed_before_expiry(
    credentials: SessionCredentials, clock: Clock
) -> None:
    session = SessionInfo("s1", "default", "helper", user="alice")
    first = credentials.model_token(session, helper())
    clock.now += 239
    assert credentials.model_token(session, helper()) == first
    clock.now += 1  # 60 s before expiry: a fresh token
    second = credentials.model_token(session, helper())
    assert second != first
    assert claims(second)["exp"] == claims(first)["exp"] + 240
    other = SessionInfo("s2", "default", "helper", user="alice")
    assert credentials.model_token(other, helper()) != second
    credentials.forget("s1")
    assert credentials.model_token(session, helper()) != second


def test_issuer_may_be_a_function_following_key_rotation(ring: KeyRing, clock: Clock) -> None:
    current = [TokenIssuer(ring, ISSUER, clock=clock)]
    credentials = SessionCredentials(lambda: current[0], clock=clock)
    session = SessionInfo("s1", "default", "helper")
    before = credentials.model_token(session, helper())
    ring.rotate()
    current[0] = TokenIssuer(ring, ISSUER, clock=clock)
    credentials.forget("s1")
    after = credentials.model_token(session, helper())
    kid = [orjson.loads(b64url_decode(t.split(".")[0]))["kid"] for t in (before, after)]
    assert kid[0] != kid[1]


def test_bad_input_is_refused_clearly(credentials: SessionCredentials, ring: KeyRing) -> None:
    with pytest.raises(ValueError, match="refresh_before"):
        SessionCredentials(TokenIssuer(ring, ISSUER), ttl=60, refresh_before=60)
    with pytest.raises(ValueError, match="not a valid workload id"):
        SessionCredentials(TokenIssuer(ring, ISSUER), trust_domain="Not A Domain")
    with pytest.raises(ValueError, match="belongs to agent default/other"):
        credentials.model_token(SessionInfo("s1", "default", "other"), helper())
    with pytest.raises(ValueError, match="expected 'namespace/name'"):
        credentials.model_token(SessionInfo("s1", "default", "helper", actors=("x",)), helper())
    with pytest.raises(ValueError, match="not a workload id"):
        credentials.model_token(
            SessionInfo("s1", "default", "helper", actors=("spiffe://x/y",)), helper()
        )


def test_gateway_verifier_accepts_the_model_token_and_reads_the_chain(
    credentials: SessionCredentials, ring: KeyRing, clock: Clock
) -> None:
    verifier = Verifier(ring.jwks(), issuer=ISSUER, audience=GATEWAY_AUDIENCE, clock=clock)
    session = SessionInfo("s2", "default", "helper", user="alice", actors=(PLANNER,))
    principal = verifier.verify(credentials.model_token(session, helper())).principal
    assert (principal.kind, principal.id, principal.act) == ("user", "alice", (AGENT, PLANNER))
    alone = verifier.verify(
        credentials.model_token(SessionInfo("s3", "default", "helper"), helper())
    )
    assert (alone.principal.kind, alone.principal.id) == ("workload", AGENT)
    assert alone.principal.namespace == "default"
    # A tool token is for the tool, not the gateway.
    with pytest.raises(InvalidToken, match="audience"):
        verifier.verify(credentials.tool_token(session, helper(), "files"))
    # Expired tokens are refused once past the verifier's leeway.
    token = credentials.model_token(SessionInfo("s4", "default", "helper"), helper())
    clock.now += 300 + verifier.leeway
    with pytest.raises(InvalidToken, match="expired"):
        Verifier(ring.jwks(), issuer=ISSUER, audience=GATEWAY_AUDIENCE, clock=clock).verify(token)


async def test_gateway_access_feed_authenticates_the_session(
    credentials: SessionCredentials, ring: KeyRing, clock: Clock, tmp_path: Path
) -> None:
    assert credentials.trust_domain == TRUST_DOMAIN
    store = await open_store(f"sqlite:///{tmp_path}/state.db")
    try:
        feed = AccessFeed(store, admin_check=lambda _token: False)
        feed.verifier = Verifier(ring.jwks(), issuer=ISSUER, audience=GATEWAY_AUDIENCE, clock=clock)
        session = SessionInfo("s1", "default", "helper", user="alice")
        principal = feed.authenticate(credentials.model_token(session, helper()))
        assert principal is not None
        # The token says alice (sub) through the helper agent (act); Cedar sees the agent, with
        # the user it works for in ``user``: policy decides what an agent may do.
        assert (principal.kind, principal.id, principal.act) == ("user", "alice", (AGENT,))
        entity = feed.principal_entity(principal)
        assert (entity.type, entity.id) == ("Agent", AGENT)
        assert (entity.attrs["user"], entity.attrs["act"]) == ("alice", [])
        engine = PolicyEngine(
            [
                {
                    "kind": "Policy",
                    "metadata": {"name": "helper-invokes", "namespace": "default"},
                    "spec": {
                        "cedar": 'permit(principal, action == Action::"invoke", resource)\n'
                        f'  when {{ principal == Agent::"{AGENT}" && principal has user }};'
                    },
                }
            ]
        )
        context = {"model": "chat", "estimated_tokens": 10, "time": {"hour": 9, "weekday": 1}}
        endpoint = feed.endpoint_entity("default", "chat")
        assert engine.decide(entity, "invoke", endpoint, context).allowed
        stranger = feed.principal_entity(
            feed.authenticate(
                credentials.model_token(SessionInfo("s9", "default", "helper"), helper())
            )  # type: ignore[arg-type]
        )
        assert stranger.type == "Agent"
    finally:
        await store.close()


def test_delegation_of_a_verified_caller() -> None:
    from corral.identity import Principal

    user_call = Principal("user", "alice", act=(PLANNER,))
    assert delegation_of(user_call) == delegation_of(user_call)
    assert delegation_of(user_call).user == "alice"
    assert delegation_of(user_call).actors == (PLANNER,)
    chained = Principal("user", "alice", act=(AGENT, PLANNER))
    assert delegation_of(chained).actors == (PLANNER, AGENT)
    agent_call = Principal("workload", PLANNER, namespace="research")
    assert delegation_of(agent_call).user is None
    assert delegation_of(agent_call).actors == (PLANNER,)
    with pytest.raises(ValueError, match="not a workload id"):
        delegation_of(Principal("user", "alice", act=("bob",)))
