"""``Verifier``: checks a platform JWT and says who presented it.

Built from a JWKS (an immutable snapshot: when the JWKS changes, build a new one and swap the
reference). It accepts only EdDSA and ES256, and only under the algorithm the ``kid``'s key
was published for, so ``alg: none`` and HS256-keyed-with-the-public-key tokens die at the
header. Signature first, then claims: issuer, audience, ``exp``/``nbf``/``iat`` with a small
leeway, and, for ``single_use`` tokens, the ``jti`` against a replay cache that outlives
snapshots. A verified token is cached until it expires, so the common case, the same token on
every call of a session, costs a dict lookup instead of a signature check.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import islice
from types import MappingProxyType
from typing import Any

import orjson

from corral.identity.errors import InvalidToken
from corral.identity.jose import (
    ALGORITHMS,
    Algorithm,
    PublicKey,
    b64url_decode,
    key_from_jwk,
    signature_is_valid,
)
from corral.identity.principal import Principal, workload_namespace
from corral.identity.replay import ReplayCache
from corral.identity.tokens import SINGLE_USE_CLAIM

DEFAULT_LEEWAY = 30.0
MAX_TOKEN_BYTES = 8192
MAX_ACT_DEPTH = 16
_TIME_CLAIMS = ("exp", "iat", "nbf")


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    principal: Principal
    claims: Mapping[str, Any]
    expires_at: float


class Verifier:
    """Verifies tokens of ``issuer`` for ``audience`` against the keys in ``jwks``."""

    def __init__(
        self,
        jwks: Mapping[str, Any],
        *,
        issuer: str,
        audience: str,
        leeway: float = DEFAULT_LEEWAY,
        replay_cache: ReplayCache | None = None,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if cache_size < 0 or leeway < 0:
            raise ValueError(f"cache_size and leeway must not be negative ({cache_size}, {leeway})")
        self._keys = _parse_jwks(jwks)
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.replay_cache = replay_cache if replay_cache is not None else ReplayCache()
        self._cache_size = cache_size
        self._cache: dict[str, VerifiedToken] = {}
        self._clock = clock

    def verify(self, token: str) -> VerifiedToken:
        """The verified token; raises :class:`InvalidToken` saying why not."""
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None:
            if now < cached.expires_at + self.leeway:
                return cached
            self._cache.pop(token, None)
        verified = self._verify(token, now)
        if verified.claims.get(SINGLE_USE_CLAIM) is True:
            # Never cached: the replay cache must see every presentation.
            jti = str(verified.claims["jti"])
            self.replay_cache.record(jti, verified.expires_at + self.leeway, now)
        else:
            self._remember(token, verified)
        return verified

    def _verify(self, token: str, now: float) -> VerifiedToken:
        if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("malformed", f"not a string of at most {MAX_TOKEN_BYTES} characters")
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("malformed", "a JWS compact token has three dot-separated parts")
        header = _decode_object(parts[0], "header")
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise InvalidToken(
                "algorithm", f"alg {alg!r} is not accepted (only {', '.join(ALGORITHMS)})"
            )
        if "crit" in header:
            raise InvalidToken("malformed", "critical header extensions are not supported")
        if header.get("typ", "JWT") not in ("JWT", "jwt"):
            raise InvalidToken("malformed", f"typ {header.get('typ')!r} is not a JWT")
        found = self._keys.get(kid) if isinstance(kid, str) else None
        if found is None:
            raise InvalidToken("unknown-key", f"kid {kid!r} is not a key of this issuer")
        key_alg, public_key = found
        if alg != key_alg:
            raise InvalidToken("algorithm", f"key {kid!r} is for {key_alg}, not {alg}")
        try:
            signature = b64url_decode(parts[2])
        except ValueError:
            raise InvalidToken("malformed", "signature is not base64url") from None
        try:
            signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
        except UnicodeEncodeError:
            raise InvalidToken("malformed", "payload is not base64url") from None
        if not signature_is_valid(public_key, signature, signing_input):
            raise InvalidToken("signature", "signature does not verify")
        claims = _decode_object(parts[1], "payload")
        return self._check_claims(claims, now)

    def _check_claims(self, claims: dict[str, Any], now: float) -> VerifiedToken:
        for name in ("iss", "sub", "jti"):
            if not isinstance(claims.get(name), str) or not claims[name]:
                raise InvalidToken("claims", f"{name}: required, a non-empty string")
        for name in _TIME_CLAIMS:
            value = claims.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidToken("claims", f"{name}: required, a NumericDate")
        if claims["iss"] != self.issuer:
            raise InvalidToken("issuer", f"issuer {claims['iss']!r} is not {self.issuer!r}")
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or self.audience not in audiences:
            raise InvalidToken(
                "audience", f"audience {audience!r} does not include {self.audience!r}"
            )
        if now >= claims["exp"] + self.leeway:
            raise InvalidToken("expired", f"expired at {claims['exp']}")
        if now < claims["nbf"] - self.leeway or now < claims["iat"] - self.leeway:
            raise InvalidToken(
                "not-yet-valid", f"not valid before {max(claims['nbf'], claims['iat'])}"
            )
        principal = _principal(claims)
        return VerifiedToken(principal, MappingProxyType(claims), float(claims["exp"]))

    def _remember(self, token: str, verified: VerifiedToken) -> None:
        if self._cache_size == 0:
            return
        if len(self._cache) >= self._cache_size:
            # Evict the oldest tenth in one go (dicts keep insertion order), which keeps the
            # cost per insert constant; expired entries are old, so they go first, and a hit
            # on one that is still here drops it anyway.
            with contextlib.suppress(RuntimeError):
                for stale in list(islice(self._cache, self._cache_size // 10 + 1)):
                    self._cache.pop(stale, None)
        self._cache[token] = verified


def _parse_jwks(jwks: Mapping[str, Any]) -> dict[str, tuple[Algorithm, PublicKey]]:
    entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError("a JWKS is an object with a 'keys' list")
    keys: dict[str, tuple[Algorithm, PublicKey]] = {}
    for index, entry in enumerate(entries):
        try:
            kid, alg, key = key_from_jwk(entry)
        except ValueError as error:
            raise ValueError(f"keys[{index}]: {error}") from None
        if kid in keys:
            raise ValueError(f"keys[{index}]: kid {kid!r} appears twice")
        keys[kid] = (alg, key)
    return keys


def _decode_object(segment: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(b64url_decode(segment))
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidToken("malformed", f"{what} is not base64url-encoded JSON") from None
    if not isinstance(value, dict):
        raise InvalidToken("malformed", f"{what} is not a JSON object")
    return value


def _principal(claims: dict[str, Any]) -> Principal:
    subject: str = claims["sub"]
    act: list[str] = []
    node = claims.get("act")
    while node is not None:
        if not isinstance(node, dict) or not isinstance(node.get("sub"), str) or not node["sub"]:
            raise InvalidToken("claims", "act: each actor is an object with a string 'sub'")
        if len(act) == MAX_ACT_DEPTH:
            raise InvalidToken("claims", f"act: a chain longer than {MAX_ACT_DEPTH} actors")
        act.append(node["sub"])
        node = node.get("act")
    team = claims.get("team")
    if team is not None and not isinstance(team, str):
        raise InvalidToken("claims", "team: must be a string")
    labels = claims.get("labels", {})
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise InvalidToken("claims", "labels: must map strings to strings")
    namespace = workload_namespace(subject)
    return Principal(
        kind="user" if namespace is None else "workload",
        id=subject,
        team=team,
        namespace=namespace,
        labels=MappingProxyType(labels),
        act=tuple(act),
    )
