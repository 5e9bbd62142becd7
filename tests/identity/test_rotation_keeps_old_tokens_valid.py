"""Rotation: the new key signs, the old stays in the JWKS until its tokens have all expired."""

from __future__ import annotations

import base64
import json

import pytest

from corral.identity import InvalidToken, KeyRing, TokenIssuer, Verifier
from corral.identity.signing import RETENTION_GRACE

from .helpers import AUDIENCE, ISSUER, Clock


def verifier_for(ring: KeyRing, clock: Clock) -> Verifier:
    return Verifier(ring.jwks(), issuer=ISSUER, audience=AUDIENCE, clock=clock)


def header_kid(token: str) -> str:
    head = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


def test_jwks_publishes_every_current_key_with_kid_alg_and_use(ring: KeyRing):
    document = ring.jwks()
    assert list(document) == ["keys"]
    (jwk,) = document["keys"]
    assert jwk["kid"] == ring.current.kid
    assert jwk["alg"] == ring.current.alg
    assert jwk["use"] == "sig"
    if ring.current.alg == "EdDSA":
        assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519")
        assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
    else:
        assert (jwk["kty"], jwk["crv"]) == ("EC", "P-256")
        assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert "d" not in jwk


def test_new_tokens_are_signed_by_the_new_key(issuer: TokenIssuer, ring: KeyRing):
    before = ring.current.kid
    ring.rotate()
    assert ring.current.kid != before
    assert header_kid(issuer.mint("alice", AUDIENCE, 60)) == ring.current.kid


def test_tokens_of_the_old_key_stay_valid_until_they_expire(
    issuer: TokenIssuer, ring: KeyRing, clock: Clock
):
    old_token = issuer.mint("alice", AUDIENCE, ring.max_token_ttl)
    expires_at = clock.now + ring.max_token_ttl
    clock.advance(10)
    ring.rotate()
    new_token = issuer.mint("bob", AUDIENCE, 60)
    assert verifier_for(ring, clock).verify(new_token).principal.id == "bob"
    # A verifier that refreshes its JWKS at any moment up to the old token's expiry accepts it.
    while clock.now < expires_at:
        assert verifier_for(ring, clock).verify(old_token).principal.id == "alice"
        clock.advance(59)


def test_a_retired_key_leaves_the_jwks_once_its_tokens_have_expired(ring: KeyRing, clock: Clock):
    old = ring.current
    ring.rotate()
    assert [key["kid"] for key in ring.jwks()["keys"]] == [old.kid, ring.current.kid]
    clock.advance(ring.max_token_ttl + RETENTION_GRACE - 1)
    assert old.kid in {key["kid"] for key in ring.jwks()["keys"]}
    clock.advance(1)
    assert [key["kid"] for key in ring.jwks()["keys"]] == [ring.current.kid]


def test_lapsed_keys_are_dropped_from_the_ring_at_the_next_rotation(ring: KeyRing, clock: Clock):
    first = ring.current
    ring.rotate()
    clock.advance(ring.max_token_ttl + RETENTION_GRACE)
    ring.rotate()
    assert first.kid not in {key.kid for key in ring.keys}
    assert len(ring.keys) == 2


def test_a_verifier_without_the_old_key_refuses_its_tokens(
    issuer: TokenIssuer, ring: KeyRing, clock: Clock
):
    old_token = issuer.mint("alice", AUDIENCE, 60)
    ring.rotate()
    clock.advance(ring.max_token_ttl + RETENTION_GRACE)
    with pytest.raises(InvalidToken) as caught:
        verifier_for(ring, clock).verify(old_token)
    assert caught.value.problem == "unknown-key"


def test_rotation_can_change_the_algorithm(issuer: TokenIssuer, ring: KeyRing, clock: Clock):
    other = "ES256" if ring.current.alg == "EdDSA" else "EdDSA"
    old_token = issuer.mint("alice", AUDIENCE, 60)
    ring.rotate(other)
    assert ring.current.alg == other
    verifier = verifier_for(ring, clock)
    assert verifier.verify(old_token).principal.id == "alice"
    assert verifier.verify(issuer.mint("bob", AUDIENCE, 60)).principal.id == "bob"


def test_mint_refuses_lifetimes_a_rotation_could_outlive(issuer: TokenIssuer, ring: KeyRing):
    with pytest.raises(ValueError, match="ttl must be between 1 and 600"):
        issuer.mint("alice", AUDIENCE, ring.max_token_ttl + 1)
    with pytest.raises(ValueError, match="ttl must be between"):
        issuer.mint("alice", AUDIENCE, 0)


def test_a_key_ring_needs_exactly_one_current_key(ring: KeyRing):
    ring.rotate()
    retired = ring.keys[0]
    with pytest.raises(ValueError, match="exactly one current key"):
        KeyRing([retired])
