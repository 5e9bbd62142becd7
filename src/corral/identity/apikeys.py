"""API key material: generating a key, and the salted hash the ApiKey object stores.

A key is ``crl_<prefix>_<secret>``: ``prefix`` is 12 base32 characters (public: it finds the key
in the index and in logs), ``secret`` is 32 random bytes, base64url. The stored ``hash`` is
HMAC-SHA256 keyed by a per-key random ``salt`` over the whole key.

Why a fast hash and not a slow KDF (bcrypt, scrypt, Argon2): those exist to make guessing a
*low-entropy* password expensive. A 256-bit random secret cannot be guessed at any hash speed,
so the slowness would buy nothing and cost milliseconds on every gateway request. The salt
keeps two stores' hashes of the same key apart and rules out precomputed tables; HMAC rather
than bare SHA-256 avoids any length-extension shape.
"""

from __future__ import annotations

import hmac
import secrets
from typing import NamedTuple

from corral.api.kinds.apikey import API_KEY_SCHEME, PREFIX_LENGTH

SECRET_BYTES = 32
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_SECRET_LENGTH = 43  # base64url of 32 bytes, unpadded
_HEAD = f"{API_KEY_SCHEME}_"
KEY_LENGTH = len(_HEAD) + PREFIX_LENGTH + 1 + _SECRET_LENGTH


class GeneratedApiKey(NamedTuple):
    """A fresh key: show ``plaintext`` once; store ``prefix``, ``salt`` and ``hash``."""

    plaintext: str
    prefix: str
    salt: str
    hash: str


def generate_api_key() -> GeneratedApiKey:
    """A new random key and the fields of its ApiKey spec."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    plaintext = f"{_HEAD}{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    salt = secrets.token_hex(16)
    return GeneratedApiKey(plaintext, prefix, salt, hash_api_key(plaintext, bytes.fromhex(salt)))


def hash_api_key(plaintext: str, salt: bytes) -> str:
    """The stored form of ``plaintext``: HMAC-SHA256 keyed by ``salt``, lower-case hex."""
    return hmac.digest(salt, plaintext.encode(), "sha256").hex()


def key_prefix(bearer: str) -> str | None:
    """The prefix of a well-formed key, or None when ``bearer`` cannot be one of ours."""
    if len(bearer) != KEY_LENGTH or not bearer.startswith(_HEAD):
        return None
    separator = len(_HEAD) + PREFIX_LENGTH
    if bearer[separator] != "_" or not bearer.isascii():
        return None
    return bearer[len(_HEAD) : separator]
