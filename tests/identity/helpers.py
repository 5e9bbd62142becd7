"""Builders for identity tests: a settable clock, ApiKey/Team objects, hand-made JWS tokens.

The token builders encode JWS by hand (not through corral.identity) so a test can put exactly
the header, claims or signature it wants in front of the verifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from corral.api.validation import validate_object
from corral.identity import GeneratedApiKey, SigningKey

ISSUER = "https://corral.test"
AUDIENCE = "gateway"
START = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def team(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return validate_object(
        {
            "apiVersion": "corral.dev/v1alpha1",
            "kind": "Team",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"displayName": name.title(), "labels": labels},
        }
    )


def api_key(
    name: str,
    generated: GeneratedApiKey,
    team_name: str,
    namespace: str = "default",
    **spec: Any,
) -> dict[str, Any]:
    return validate_object(
        {
            "apiVersion": "corral.dev/v1alpha1",
            "kind": "ApiKey",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "team": team_name,
                "prefix": generated.prefix,
                "salt": generated.salt,
                "hash": generated.hash,
                **spec,
            },
        }
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: Any) -> str:
    return b64(json.dumps(value).encode())


def claims(now: float = START, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + 300,
        "jti": "jti-1",
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def signed(key: SigningKey, payload: dict[str, Any], **header: Any) -> str:
    """A JWS over ``payload`` signed properly with ``key`` (header fields overridable)."""
    head = {"alg": key.alg, "kid": key.kid, "typ": "JWT", **header}
    return signed_segments(
        key, {name: v for name, v in head.items() if v is not None}, segment(payload)
    )


def signed_segments(key: SigningKey, header: dict[str, Any], payload_segment: str) -> str:
    """A JWS with ``header`` over an already encoded payload, signed with ``key``."""
    signing_input = f"{segment(header)}.{payload_segment}".encode()
    private_key = key.private_key
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        signature = private_key.sign(signing_input)
    else:
        assert isinstance(private_key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input.decode()}.{b64(signature)}"


def hmac_signed(secret: bytes, header: dict[str, Any], payload: dict[str, Any]) -> str:
    signing_input = f"{segment(header)}.{segment(payload)}".encode()
    return f"{signing_input.decode()}.{b64(hmac.digest(secret, signing_input, hashlib.sha256))}"
