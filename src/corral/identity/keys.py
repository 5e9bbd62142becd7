"""``SigningKey``: one of the platform's token signing keys, with its place in rotation."""

from __future__ import annotations

from dataclasses import dataclass

from corral.identity.jose import (
    Algorithm,
    PrivateKey,
    algorithm_of,
    generate_private_key,
    public_jwk,
    thumbprint,
)


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    alg: Algorithm
    private_key: PrivateKey
    created_at: float
    retired_at: float | None = None
    keep_until: float | None = None
    """When a retired key leaves the JWKS; None while the key is current."""

    @classmethod
    def generate(cls, alg: Algorithm, *, now: float) -> SigningKey:
        private_key = generate_private_key(alg)
        return cls(thumbprint(private_key.public_key()), alg, private_key, created_at=now)

    @classmethod
    def from_private_key(cls, private_key: PrivateKey, *, created_at: float) -> SigningKey:
        return cls(
            thumbprint(private_key.public_key()), algorithm_of(private_key), private_key, created_at
        )

    def jwk(self) -> dict[str, str]:
        """The public JWK as published: key members plus ``kid``, ``alg`` and ``use``."""
        return {
            **public_jwk(self.private_key.public_key()),
            "kid": self.kid,
            "alg": self.alg,
            "use": "sig",
        }
