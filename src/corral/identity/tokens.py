"""``TokenIssuer``: mints the short-lived JWTs workloads present to the gateway and tools.

Each token has one audience, minutes of lifetime and a unique ``jti``, and names its signing
key in the ``kid`` header. Delegation follows RFC 8693: ``sub`` stays the party on whose
behalf the call is made (say, the user), ``act`` names the actor (the agent), nested for chains
(``act.act`` is whoever handed the task to that actor).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from corral.identity.jose import b64url_encode, sign
from corral.identity.signing import KeyRing

SINGLE_USE_CLAIM = "single_use"
"""A token carrying ``"single_use": true`` is refused the second time a verifier sees it."""
RESERVED_CLAIMS = frozenset(
    {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "act", SINGLE_USE_CLAIM}
)


class TokenIssuer:
    """Signs tokens with the key ring's current key, as issuer ``issuer``."""

    def __init__(
        self, keys: KeyRing, issuer: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        if not issuer:
            raise ValueError("issuer must not be empty")
        self.keys = keys
        self.issuer = issuer
        self._clock = clock

    def mint(
        self,
        sub: str,
        audience: str,
        ttl: float,
        act: str | Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
        *,
        single_use: bool = False,
    ) -> str:
        """A signed JWT for ``sub``, valid for ``ttl`` seconds at ``audience`` only.

        ``act`` is the delegation chain, the acting party first; ``extra`` adds claims (such
        as ``team`` or ``labels``) but may not override the registered ones.
        """
        if not sub:
            raise ValueError("sub must not be empty")
        if not audience:
            raise ValueError("audience must not be empty")
        if not 1 <= ttl <= self.keys.max_token_ttl:
            raise ValueError(
                f"ttl must be between 1 and {self.keys.max_token_ttl:g} seconds (got {ttl:g}); "
                "a longer lifetime would outlive its key's place in the JWKS after a rotation"
            )
        clashing = sorted(RESERVED_CLAIMS & set(extra or {}))
        if clashing:
            raise ValueError(f"extra claims may not set {', '.join(clashing)}")
        now = int(self._clock())
        claims: dict[str, Any] = {
            **(extra or {}),
            "iss": self.issuer,
            "sub": sub,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + int(ttl),
            "jti": secrets.token_urlsafe(16),
        }
        chain = [act] if isinstance(act, str) else list(act or ())
        if chain:
            claims["act"] = _nested_act(chain)
        if single_use:
            claims[SINGLE_USE_CLAIM] = True
        key = self.keys.current
        header = {"alg": key.alg, "kid": key.kid, "typ": "JWT"}
        signing_input = f"{_encode_json(header)}.{_encode_json(claims)}".encode("ascii")
        return (
            f"{signing_input.decode('ascii')}.{b64url_encode(sign(key.private_key, signing_input))}"
        )


def _nested_act(chain: Sequence[str]) -> dict[str, Any]:
    if any(not isinstance(actor, str) or not actor for actor in chain):
        raise ValueError(f"act: every actor must be a non-empty string (got {list(chain)!r})")
    act: dict[str, Any] = {"sub": chain[-1]}
    for actor in reversed(chain[:-1]):
        act = {"sub": actor, "act": act}
    return act


def _encode_json(value: Mapping[str, Any]) -> str:
    try:
        return b64url_encode(orjson.dumps(value))
    except TypeError as error:
        raise ValueError(f"claims must be JSON-serialisable: {error}") from None
