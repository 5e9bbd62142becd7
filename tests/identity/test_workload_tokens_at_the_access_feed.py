"""The gateway's authentication with a workload verifier: a good token is an Agent to Cedar,
every bad one a 401 GatewayError naming the check that failed (before any body is read).

The verifier and tokens are the identity library's; the access feed is the real one (its store
is never touched: authentication reads only the snapshots it holds).
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from corral.gateway import GatewayError
from corral.identity import KeyRing, SigningKey, TokenIssuer, Verifier, workload_id
from corral.identity.keyfiles import decode_keys, encode_keys
from corral.server.access_feed import ADMIN_PRINCIPAL, AccessFeed
from corral.store.protocol import Store

from .helpers import AUDIENCE, ISSUER, Clock, b64, claims, hmac_signed, segment, signed

AGENT = workload_id("corral.local", "research", "summariser")


@pytest.fixture
def feed(verifier: Verifier) -> AccessFeed:
    access = AccessFeed(cast(Store, None), lambda token: token == "admin-token")
    access.verifier = verifier
    return access


def refusal(feed: AccessFeed, token: str) -> str:
    with pytest.raises(GatewayError) as caught:
        feed.authenticate(token)
    assert caught.value.status == 401
    assert caught.value.code == "invalid_api_key"
    assert (b"www-authenticate", b"Bearer") in caught.value.headers
    return caught.value.message


def test_a_good_token_is_an_agent_in_its_namespace_and_team(ring: KeyRing, feed: AccessFeed):
    principal = feed.authenticate(signed(ring.current, claims(sub=AGENT, team="writers")))
    assert principal is not None
    assert (principal.kind, principal.id, principal.namespace, principal.team) == (
        "workload",
        AGENT,
        "research",
        "writers",
    )
    entity = feed.principal_entity(principal)
    assert (entity.type, entity.id) == ("Agent", AGENT)
    assert set(entity.parents) == {("Namespace", "research"), ("Team", "research/writers")}


def test_the_admin_token_and_api_keys_still_come_first(feed: AccessFeed):
    assert feed.authenticate("admin-token") is ADMIN_PRINCIPAL
    assert feed.authenticate("crl_unknown_key") is None
    assert feed.authenticate(None) is None


def other_alg(key: SigningKey) -> str:
    return "ES256" if key.alg == "EdDSA" else "EdDSA"


BAD_TOKENS: dict[str, Any] = {
    "alg-none": (
        lambda ring: f"{segment({'alg': 'none', 'kid': ring.current.kid})}.{segment(claims())}.",
        "(algorithm): alg 'none' is not accepted",
    ),
    "hs256-with-the-public-key": (
        lambda ring: hmac_signed(
            json.dumps(ring.jwks()["keys"][0]).encode(),
            {"alg": "HS256", "kid": ring.current.kid},
            claims(),
        ),
        "(algorithm): alg 'HS256' is not accepted",
    ),
    "other-alg-for-the-key": (
        lambda ring: signed(ring.current, claims(), alg=other_alg(ring.current)),
        "(algorithm)",
    ),
    "wrong-audience": (
        lambda ring: signed(ring.current, claims(aud="some-tool")),
        "(audience): audience 'some-tool' does not include",
    ),
    "wrong-issuer": (
        lambda ring: signed(ring.current, claims(iss="https://evil.example")),
        "(issuer): issuer 'https://evil.example' is not",
    ),
    "expired": (
        lambda ring: signed(ring.current, claims(exp=int(ring.current.created_at) - 60)),
        "(expired)",
    ),
    "not-yet-valid": (
        lambda ring: signed(ring.current, claims(nbf=int(ring.current.created_at) + 600)),
        "(not-yet-valid)",
    ),
    "unknown-kid": (
        lambda _ring: signed(SigningKey.generate("EdDSA", now=0), claims()),
        "(unknown-key)",
    ),
    "forged-signature": (
        lambda ring: signed(
            SigningKey.generate(ring.current.alg, now=0), claims(), kid=ring.current.kid
        ),
        "(signature): signature does not verify",
    ),
    "garbage": (lambda _ring: "not.a.jwt", "(malformed)"),
    "non-ascii-payload": (
        lambda ring: f"{segment({'alg': ring.current.alg, 'kid': ring.current.kid})}.é.{b64(b'x')}",
        "(malformed)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_every_bad_token_is_a_401_naming_the_check(ring: KeyRing, feed: AccessFeed, case: str):
    make, expected = BAD_TOKENS[case]
    message = refusal(feed, make(ring))
    assert message.startswith("invalid workload token (")
    assert expected in message


def test_a_replayed_single_use_token_is_a_401(feed: AccessFeed, issuer: TokenIssuer):
    once = issuer.mint(AGENT, AUDIENCE, 60, single_use=True)
    assert feed.authenticate(once) is not None
    assert "(replayed): jti" in refusal(feed, once)


def test_without_a_verifier_tokens_are_refused_not_ignored(ring: KeyRing, feed: AccessFeed):
    feed.verifier = None
    assert "not accepted by this gateway" in refusal(feed, signed(ring.current, claims()))


def test_the_ring_survives_its_secret_document(ring: KeyRing, clock: Clock):
    ring.rotate()
    loaded = decode_keys(encode_keys(ring.keys), "Secret x")
    assert [(k.kid, k.alg, k.retired_at, k.keep_until) for k in loaded] == [
        (k.kid, k.alg, k.retired_at, k.keep_until) for k in ring.keys
    ]
    reborn = KeyRing(loaded, max_token_ttl=ring.max_token_ttl, clock=clock)
    token = TokenIssuer(reborn, ISSUER, clock=clock).mint("alice", AUDIENCE, 60)
    verifier = Verifier(ring.jwks(), issuer=ISSUER, audience=AUDIENCE, clock=clock)
    assert verifier.verify(token).principal.id == "alice"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{", "not a key ring document"),
        ('{"keys": [{"kid": "k"}]}', "keys[0]: needs a string 'kid' and 'pem'"),
        ('{"keys": [{"kid": "k", "pem": "nope", "createdAt": 1}]}', "'pem' is not a private key"),
    ],
)
def test_a_damaged_secret_document_is_refused_saying_where(document: str, message: str):
    with pytest.raises(ValueError, match="Secret x") as caught:
        decode_keys(document, "Secret x")
    assert message in str(caught.value)


def test_a_pem_under_another_kid_is_refused(ring: KeyRing):
    entry = json.loads(encode_keys(ring.keys))
    entry["keys"][0]["kid"] = "someone-else"
    with pytest.raises(ValueError, match="not someone-else"):
        decode_keys(json.dumps(entry), "Secret x")
