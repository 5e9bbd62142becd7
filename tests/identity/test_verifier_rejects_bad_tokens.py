"""Every way a token can be wrong is refused, and the refusal names the check that failed."""

from __future__ import annotations

import json

import pytest

from corral.identity import InvalidToken, KeyRing, TokenIssuer, Verifier

from .helpers import (
    AUDIENCE,
    ISSUER,
    Clock,
    b64,
    claims,
    hmac_signed,
    segment,
    signed,
    signed_segments,
)


def refusal(verifier: Verifier, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    return caught.value


def test_a_well_formed_token_is_accepted(ring: KeyRing, verifier: Verifier):
    verified = verifier.verify(signed(ring.current, claims()))
    assert verified.principal.id == "alice"
    assert verified.claims["aud"] == AUDIENCE


def test_alg_none_is_refused(ring: KeyRing, verifier: Verifier):
    token = f"{segment({'alg': 'none', 'kid': ring.current.kid})}.{segment(claims())}."
    problem = refusal(verifier, token)
    assert problem.problem == "algorithm"
    assert "'none'" in str(problem)


@pytest.mark.parametrize("hmac_alg", ["HS256", "HS384", "HS512"])
def test_hmac_algorithms_are_refused(ring: KeyRing, verifier: Verifier, hmac_alg: str):
    token = hmac_signed(b"any secret", {"alg": hmac_alg, "kid": ring.current.kid}, claims())
    assert refusal(verifier, token).problem == "algorithm"


def test_hs256_keyed_with_the_published_public_key_is_refused(ring: KeyRing, verifier: Verifier):
    # The classic confusion: a library that feeds the "key" to HMAC when the token says HS256.
    jwk = ring.jwks()["keys"][0]
    for secret in (json.dumps(jwk).encode(), jwk["x"].encode()):
        token = hmac_signed(secret, {"alg": "HS256", "kid": jwk["kid"]}, claims())
        assert refusal(verifier, token).problem == "algorithm"


def test_a_key_is_only_accepted_under_its_own_algorithm(ring: KeyRing, verifier: Verifier):
    other = "ES256" if ring.current.alg == "EdDSA" else "EdDSA"
    token = signed(ring.current, claims(), alg=other)
    problem = refusal(verifier, token)
    assert problem.problem == "algorithm"
    assert f"is for {ring.current.alg}" in str(problem)


def test_wrong_audience_is_refused(ring: KeyRing, verifier: Verifier):
    token = signed(ring.current, claims(aud="tool-server"))
    assert refusal(verifier, token).problem == "audience"


def test_audience_list_must_include_ours(ring: KeyRing, verifier: Verifier):
    assert verifier.verify(signed(ring.current, claims(aud=["x", AUDIENCE]))).claims["sub"]
    assert refusal(verifier, signed(ring.current, claims(aud=["x", "y"]))).problem == "audience"


def test_wrong_issuer_is_refused(ring: KeyRing, verifier: Verifier):
    token = signed(ring.current, claims(iss="https://elsewhere.test"))
    assert refusal(verifier, token).problem == "issuer"


def test_expired_token_is_refused_after_the_leeway(ring: KeyRing, verifier: Verifier, clock: Clock):
    token = signed(ring.current, claims(exp=int(clock.now) + 60))
    clock.advance(60 + verifier.leeway - 1)
    assert verifier.verify(token).claims["exp"] == int(clock.now) - int(verifier.leeway) + 1
    clock.advance(1)
    assert refusal(verifier, token).problem == "expired"
    fresh = Verifier(ring.jwks(), issuer=ISSUER, audience=AUDIENCE, clock=clock)
    assert refusal(fresh, token).problem == "expired"


def test_not_yet_valid_token_is_refused_beyond_the_leeway(
    ring: KeyRing, verifier: Verifier, clock: Clock
):
    within = signed(ring.current, claims(nbf=int(clock.now) + 10, jti="a"))
    assert verifier.verify(within).principal.id == "alice"
    later = signed(ring.current, claims(nbf=int(clock.now) + 120, jti="b"))
    assert refusal(verifier, later).problem == "not-yet-valid"
    issued_in_future = signed(ring.current, claims(iat=int(clock.now) + 120, jti="c"))
    assert refusal(verifier, issued_in_future).problem == "not-yet-valid"


def test_unknown_kid_is_refused(ring: KeyRing, verifier: Verifier, clock: Clock):
    stranger = KeyRing.generate(ring.current.alg, clock=clock).current
    problem = refusal(verifier, signed(stranger, claims()))
    assert problem.problem == "unknown-key"
    assert stranger.kid in str(problem)


def test_missing_kid_is_refused(ring: KeyRing, verifier: Verifier):
    token = signed(ring.current, claims(), kid=None)
    assert refusal(verifier, token).problem == "unknown-key"


def test_signature_by_another_key_under_a_known_kid_is_refused(
    ring: KeyRing, verifier: Verifier, clock: Clock
):
    impostor = KeyRing.generate(ring.current.alg, clock=clock).current
    token = signed(impostor, claims(), kid=ring.current.kid)
    assert refusal(verifier, token).problem == "signature"


def test_changed_claims_break_the_signature(ring: KeyRing, verifier: Verifier):
    header, _, signature = signed(ring.current, claims()).split(".")
    tampered = f"{header}.{segment(claims(sub='mallory'))}.{signature}"
    assert refusal(verifier, tampered).problem == "signature"


def test_truncated_signature_is_refused(ring: KeyRing, verifier: Verifier):
    token = signed(ring.current, claims())
    head, payload, _ = token.split(".")
    assert refusal(verifier, f"{head}.{payload}.{b64(b'short')}").problem == "signature"
    assert refusal(verifier, f"{head}.{payload}.").problem == "signature"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-token",
        "a.b",
        "a.b.c.d",
        "!!!.e30.e30",
        f"{b64(b'[1, 2]')}.e30.",
        f"{b64(b'not json')}.e30.",
        "x" * 9000,
    ],
    ids=[
        "empty",
        "one-part",
        "two-parts",
        "four-parts",
        "bad-base64",
        "array-header",
        "non-json-header",
        "oversized",
    ],
)
def test_malformed_tokens_are_refused(verifier: Verifier, token: str):
    assert refusal(verifier, token).problem == "malformed"


def test_malformed_payload_under_a_valid_signature_is_refused(ring: KeyRing, verifier: Verifier):
    token = signed_segments(
        ring.current, {"alg": ring.current.alg, "kid": ring.current.kid}, b64(b"[1,2,3]")
    )
    assert refusal(verifier, token).problem == "malformed"


def test_critical_header_extensions_are_refused(ring: KeyRing, verifier: Verifier):
    token = signed(ring.current, claims(), crit=["exp"])
    assert refusal(verifier, token).problem == "malformed"


@pytest.mark.parametrize(
    "override",
    [
        {"sub": None},
        {"sub": ""},
        {"jti": None},
        {"iss": None},
        {"exp": None},
        {"exp": "tomorrow"},
        {"nbf": True},
        {"act": {"name": "agent"}},
        {"act": "agent"},
        {"team": 7},
        {"labels": {"tier": 1}},
    ],
    ids=lambda override: ",".join(f"{k}={v!r}" for k, v in override.items()),
)
def test_missing_or_mistyped_claims_are_refused(
    ring: KeyRing, verifier: Verifier, override: dict[str, object]
):
    assert refusal(verifier, signed(ring.current, claims(**override))).problem == "claims"


def test_overlong_delegation_chain_is_refused(issuer: TokenIssuer, verifier: Verifier):
    token = issuer.mint("alice", AUDIENCE, 60, act=[f"agent-{n}" for n in range(17)])
    assert refusal(verifier, token).problem == "claims"
