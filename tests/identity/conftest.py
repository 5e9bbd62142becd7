"""Fixtures: a fake clock, a key ring per algorithm, an issuer and a verifier on that clock."""

from __future__ import annotations

import pytest

from corral.identity import Algorithm, KeyRing, ReplayCache, TokenIssuer, Verifier

from .helpers import AUDIENCE, ISSUER, Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["EdDSA", "ES256"])
def alg(request: pytest.FixtureRequest) -> Algorithm:
    chosen: Algorithm = request.param
    return chosen


@pytest.fixture
def ring(alg: Algorithm, clock: Clock) -> KeyRing:
    return KeyRing.generate(alg, max_token_ttl=600, clock=clock)


@pytest.fixture
def issuer(ring: KeyRing, clock: Clock) -> TokenIssuer:
    return TokenIssuer(ring, ISSUER, clock=clock)


@pytest.fixture
def replay_cache() -> ReplayCache:
    return ReplayCache()


@pytest.fixture
def verifier(ring: KeyRing, clock: Clock, replay_cache: ReplayCache) -> Verifier:
    return Verifier(
        ring.jwks(), issuer=ISSUER, audience=AUDIENCE, replay_cache=replay_cache, clock=clock
    )
