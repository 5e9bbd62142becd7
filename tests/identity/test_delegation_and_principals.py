"""Who a token says the caller is: workload or user, team and labels, the RFC 8693 act chain."""

from __future__ import annotations

import base64
import json

import pytest

from corral.identity import TokenIssuer, Verifier, workload_id

from .helpers import AUDIENCE


def payload(token: str) -> dict[str, object]:
    body = token.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return decoded


def test_a_spiffe_subject_is_a_workload_in_its_namespace(issuer: TokenIssuer, verifier: Verifier):
    agent = workload_id("corral.test", "research", "summariser")
    assert agent == "spiffe://corral.test/ns/research/agent/summariser"
    token = issuer.mint(agent, AUDIENCE, 60, extra={"team": "search", "labels": {"tier": "gold"}})
    principal = verifier.verify(token).principal
    assert (principal.kind, principal.id, principal.namespace, principal.team) == (
        "workload",
        agent,
        "research",
        "search",
    )
    assert dict(principal.labels) == {"tier": "gold"}


def test_any_other_subject_is_a_user(issuer: TokenIssuer, verifier: Verifier):
    principal = verifier.verify(issuer.mint("alice@example.com", AUDIENCE, 60)).principal
    assert (principal.kind, principal.namespace, principal.team) == ("user", None, None)


def test_delegation_keeps_the_user_as_subject_and_names_the_actor(
    issuer: TokenIssuer, verifier: Verifier
):
    agent = workload_id("corral.test", "default", "planner")
    token = issuer.mint("alice", AUDIENCE, 60, act=agent)
    assert payload(token)["act"] == {"sub": agent}
    principal = verifier.verify(token).principal
    assert (principal.kind, principal.id, principal.act) == ("user", "alice", (agent,))


def test_a_delegation_chain_nests_act_with_the_current_actor_outermost(
    issuer: TokenIssuer, verifier: Verifier
):
    chain = ["spiffe://corral.test/ns/default/tool/search", "planner", "orchestrator"]
    token = issuer.mint("alice", AUDIENCE, 60, act=chain)
    assert payload(token)["act"] == {
        "sub": chain[0],
        "act": {"sub": chain[1], "act": {"sub": chain[2]}},
    }
    assert verifier.verify(token).principal.act == tuple(chain)


def test_minted_tokens_carry_the_registered_claims_and_a_unique_jti(issuer: TokenIssuer):
    first, second = (payload(issuer.mint("alice", AUDIENCE, 120)) for _ in range(2))
    assert {"iss", "sub", "aud", "exp", "iat", "nbf", "jti"} <= set(first)
    assert first["aud"] == AUDIENCE
    assert first["exp"] == first["iat"] + 120  # type: ignore[operator]
    assert first["jti"] != second["jti"]


@pytest.mark.parametrize("claim", ["sub", "exp", "act", "jti", "single_use"])
def test_extra_claims_cannot_override_registered_ones(issuer: TokenIssuer, claim: str):
    with pytest.raises(ValueError, match=f"extra claims may not set {claim}"):
        issuer.mint("alice", AUDIENCE, 60, extra={claim: "x"})


def test_empty_subject_audience_or_actor_is_refused_at_mint(issuer: TokenIssuer):
    with pytest.raises(ValueError, match="sub must not be empty"):
        issuer.mint("", AUDIENCE, 60)
    with pytest.raises(ValueError, match="audience must not be empty"):
        issuer.mint("alice", "", 60)
    with pytest.raises(ValueError, match="every actor must be a non-empty string"):
        issuer.mint("alice", AUDIENCE, 60, act=["agent", ""])


def test_workload_ids_must_be_dns_names():
    with pytest.raises(ValueError, match="not a valid workload id"):
        workload_id("corral.test", "Bad_NS", "agent")
