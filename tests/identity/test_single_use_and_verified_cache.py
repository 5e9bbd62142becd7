"""Single-use tokens cannot be replayed; other tokens are verified once and then looked up."""

from __future__ import annotations

import pytest

from corral.identity import InvalidToken, KeyRing, ReplayCache, TokenIssuer, Verifier

from .helpers import AUDIENCE, ISSUER, Clock


def test_a_single_use_token_is_refused_the_second_time(issuer: TokenIssuer, verifier: Verifier):
    token = issuer.mint("alice", AUDIENCE, 60, single_use=True)
    assert verifier.verify(token).principal.id == "alice"
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    assert caught.value.problem == "replayed"


def test_a_replay_is_caught_across_verifier_snapshots(
    issuer: TokenIssuer, ring: KeyRing, clock: Clock, replay_cache: ReplayCache
):
    token = issuer.mint("alice", AUDIENCE, 60, single_use=True)
    Verifier(
        ring.jwks(), issuer=ISSUER, audience=AUDIENCE, replay_cache=replay_cache, clock=clock
    ).verify(token)
    ring.rotate()
    swapped = Verifier(
        ring.jwks(), issuer=ISSUER, audience=AUDIENCE, replay_cache=replay_cache, clock=clock
    )
    with pytest.raises(InvalidToken) as caught:
        swapped.verify(token)
    assert caught.value.problem == "replayed"


def test_ordinary_tokens_may_be_presented_many_times(issuer: TokenIssuer, verifier: Verifier):
    token = issuer.mint("alice", AUDIENCE, 60)
    assert all(verifier.verify(token).principal.id == "alice" for _ in range(3))


def test_a_verified_token_is_served_from_the_cache_until_it_expires(
    issuer: TokenIssuer, verifier: Verifier, clock: Clock
):
    token = issuer.mint("alice", AUDIENCE, 60)
    first = verifier.verify(token)
    assert verifier.verify(token) is first
    clock.advance(60 + verifier.leeway)
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    assert caught.value.problem == "expired"


def test_the_verified_cache_stays_within_its_size(issuer: TokenIssuer, ring: KeyRing, clock: Clock):
    verifier = Verifier(ring.jwks(), issuer=ISSUER, audience=AUDIENCE, cache_size=4, clock=clock)
    tokens = [issuer.mint(f"user-{n}", AUDIENCE, 60) for n in range(10)]
    verified = [verifier.verify(token) for token in tokens]
    # The four most recent are still cached; older ones were evicted and are verified afresh.
    assert [verifier.verify(t) is v for t, v in zip(tokens[-4:], verified[-4:], strict=True)] == [
        True
    ] * 4
    assert verifier.verify(tokens[0]) is not verified[0]


def test_the_replay_cache_forgets_a_jti_once_its_token_has_expired():
    cache = ReplayCache(max_entries=2)
    cache.record("a", forget_at=100, now=0)
    with pytest.raises(InvalidToken):
        cache.record("a", forget_at=100, now=99)
    cache.record("b", forget_at=200, now=99)
    cache.record("a", forget_at=300, now=100)
    assert len(cache) == 2


def test_a_full_replay_cache_refuses_new_single_use_tokens():
    cache = ReplayCache(max_entries=2)
    cache.record("a", forget_at=100, now=0)
    cache.record("b", forget_at=100, now=0)
    with pytest.raises(InvalidToken) as caught:
        cache.record("c", forget_at=100, now=50)
    assert caught.value.problem == "replay-cache-full"
    cache.record("c", forget_at=200, now=100)


def test_a_bad_jwks_is_refused_with_the_entry_that_is_wrong(ring: KeyRing):
    good = ring.jwks()["keys"][0]
    cases = [
        ({}, "a 'keys' list"),
        ({"keys": [good, good]}, "appears twice"),
        ({"keys": [{**good, "kid": ""}]}, "keys[0]: kid: required"),
        ({"keys": [{"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"}]}, "unsupported key type"),
        ({"keys": [{**good, "x": "!!"}]}, "not unpadded base64url"),
        ({"keys": [{**good, "alg": "HS256"}]}, "does not fit"),
        ({"keys": [{**good, "use": "enc"}]}, "use must be 'sig'"),
    ]
    for jwks, message in cases:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            Verifier(jwks, issuer=ISSUER, audience=AUDIENCE)
