"""Signed checkpoints: the Ed25519 key that signs them and the bytes the signature covers.

A checkpoint commits to the first ``size`` records through their Merkle ``root_hash``. The
signature covers ``corral-audit-checkpoint/v1`` and the canonical JSON of size, root (hex), time
and kid, so changing any of them, or signing with a key the verifier does not hold, shows.
``kid`` is the first 16 hex digits of SHA-256 over the raw public key, so a verifier can hold
several keys (rotation) and pick the right one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILE = "audit-signing.key"
_DOMAIN = b"corral-audit-checkpoint/v1\n"


@dataclass(frozen=True)
class Checkpoint:
    size: int
    root_hash: bytes
    time: str
    kid: str
    signature: bytes

    def signed_bytes(self) -> bytes:
        return checkpoint_payload(self.size, self.root_hash, self.time, self.kid)


def checkpoint_payload(size: int, root_hash: bytes, time: str, kid: str) -> bytes:
    body = {"size": size, "root_hash": root_hash.hex(), "time": time, "kid": kid}
    return _DOMAIN + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class SigningKey:
    """The log's checkpoint key; ``public_keys()`` is what a verifier needs."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.kid = key_id(self.public_key)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes, where: str = "audit signing key") -> SigningKey:
        """The key in a PKCS#8 PEM (what :meth:`private_pem` writes); ``where`` names it in
        errors."""
        try:
            loaded = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{where}: not a PEM private key ({error})") from None
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"{where}: expected an Ed25519 key")
        return cls(loaded)

    def private_pem(self) -> bytes:
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def load_or_create(cls, directory: str | os.PathLike[str]) -> SigningKey:
        """The key in ``directory/audit-signing.key`` (PKCS#8 PEM), created 0600 when absent."""
        path = Path(directory) / KEY_FILE
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            # O_EXCL: two processes starting together must not both write (and differ).
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as file:
                    file.write(pem)
        return cls.from_pem(path.read_bytes(), f"audit signing key {path}")

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        return {self.kid: self.public_key}

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, size: int, root_hash: bytes, time: str) -> Checkpoint:
        signature = self._private_key.sign(checkpoint_payload(size, root_hash, time, self.kid))
        return Checkpoint(size, root_hash, time, self.kid, signature)


def load_public_key(pem: bytes) -> tuple[str, Ed25519PublicKey]:
    """``(kid, key)`` from a PEM public key (what ``SigningKey.public_pem()`` writes)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as error:
        raise ValueError(f"audit public key: not a PEM public key ({error})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("audit public key: expected an Ed25519 key")
    return key_id(key), key


def signature_problem(checkpoint: Checkpoint, public_keys: Mapping[str, Ed25519PublicKey]) -> str:
    """Why ``checkpoint``'s signature does not hold, or "" when it does."""
    key = public_keys.get(checkpoint.kid)
    if key is None:
        return f"signed with unknown key {checkpoint.kid!r}"
    try:
        key.verify(checkpoint.signature, checkpoint.signed_bytes())
    except InvalidSignature:
        return "signature does not verify"
    return ""
