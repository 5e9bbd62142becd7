"""JWS building blocks for the two algorithms the platform signs with: EdDSA and ES256.

Everything here is deliberately narrow: base64url without padding, the JWK form of Ed25519 and
P-256 public keys (RFC 8037, RFC 7518 §6.2), their RFC 7638 thumbprints (used as ``kid``), and
raw signatures (ES256 as the 64-byte ``r || s`` JWS wants, not DER). No other algorithm can be
named, so an attacker-chosen ``alg`` (``none``, ``HS256`` with a public key as the secret)
has no code path to reach.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any, Literal, get_args

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

Algorithm = Literal["EdDSA", "ES256"]
ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey

_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_ES256 = ec.ECDSA(hashes.SHA256())
_P256_BYTES = 32


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url; ValueError on anything else."""
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_private_key(alg: Algorithm) -> PrivateKey:
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unsupported algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")


def algorithm_of(key: PrivateKey | PublicKey) -> Algorithm:
    """The one algorithm a key may be used with; a key is never used with another."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ValueError(f"unsupported key: EC curve {key.curve.name} (use P-256 or Ed25519)")


def sign(key: PrivateKey, signing_input: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(signing_input)
    r, s = decode_dss_signature(key.sign(signing_input, _ES256))
    return r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")


def signature_is_valid(key: PublicKey, signature: bytes, signing_input: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signing_input)
            return True
        if len(signature) != 2 * _P256_BYTES:
            return False
        r = int.from_bytes(signature[:_P256_BYTES], "big")
        s = int.from_bytes(signature[_P256_BYTES:], "big")
        key.verify(encode_dss_signature(r, s), signing_input, _ES256)
        return True
    except InvalidSignature:
        return False


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The RFC 7517 members that define ``key`` (no ``kid``/``alg``/``use`` yet)."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes_raw()
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
    algorithm_of(key)
    numbers = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url_encode(numbers.x.to_bytes(_P256_BYTES, "big")),
        "y": b64url_encode(numbers.y.to_bytes(_P256_BYTES, "big")),
    }


def thumbprint(key: PublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url): a ``kid`` derived from the key."""
    canonical = orjson.dumps(public_jwk(key), option=orjson.OPT_SORT_KEYS)
    return b64url_encode(hashlib.sha256(canonical).digest())


def key_from_jwk(jwk: Any) -> tuple[str, Algorithm, PublicKey]:
    """``(kid, alg, public key)`` from one published JWK; ValueError saying what is wrong."""
    if not isinstance(jwk, dict):
        raise ValueError(f"a JWK must be an object, got {type(jwk).__name__}")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ValueError("kid: required, a non-empty string")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    try:
        key: PublicKey
        if kty == "OKP" and crv == "Ed25519":
            key = ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(str(jwk.get("x"))))
        elif kty == "EC" and crv == "P-256":
            x, y = (b64url_decode(str(jwk.get(name))) for name in ("x", "y"))
            if len(x) != _P256_BYTES or len(y) != _P256_BYTES:
                raise ValueError("x and y must be 32 bytes each")
            numbers = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
            )
            key = numbers.public_key()
        else:
            raise ValueError(
                f"unsupported key type kty={kty!r} crv={crv!r} (OKP/Ed25519, EC/P-256)"
            )
    except ValueError as error:
        raise ValueError(f"key {kid!r}: {error}") from None
    alg = algorithm_of(key)
    if jwk.get("alg", alg) != alg:
        raise ValueError(f"key {kid!r}: alg {jwk.get('alg')!r} does not fit a {crv} key")
    if jwk.get("use", "sig") != "sig":
        raise ValueError(f"key {kid!r}: use must be 'sig' (got {jwk.get('use')!r})")
    return kid, alg, key
