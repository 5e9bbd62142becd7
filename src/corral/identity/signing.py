"""The platform's token signing keys: the current one, the retired ones still published.

``KeyRing`` holds one current key (it signs every new token) and the keys it replaced, each
kept in the JWKS until every token it can have signed has expired: a key retired at ``t`` is
published until ``t + max_token_ttl + RETENTION_GRACE``, and ``TokenIssuer`` refuses longer
lifetimes, so a rotation never invalidates a token in flight. ``kid`` is the key's RFC 7638
thumbprint. ``KeyRing.open`` keeps the ring in a directory (``corral.identity.keyfiles``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from corral.identity import keyfiles
from corral.identity.jose import Algorithm
from corral.identity.keys import SigningKey

DEFAULT_MAX_TOKEN_TTL = 900.0
RETENTION_GRACE = 120.0
"""Published past the last token's expiry: covers verifiers' clock leeway and JWKS refresh."""


class KeyRing:
    """The signing keys; safe to read from many threads while one rotates."""

    def __init__(
        self,
        keys: Sequence[SigningKey],
        *,
        max_token_ttl: float = DEFAULT_MAX_TOKEN_TTL,
        directory: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        current = [key for key in keys if key.retired_at is None]
        if len(current) != 1:
            raise ValueError(f"a key ring needs exactly one current key (got {len(current)})")
        if len({key.kid for key in keys}) != len(keys):
            raise ValueError("key ids must be unique within a key ring")
        if max_token_ttl <= 0:
            raise ValueError(f"max_token_ttl must be positive (got {max_token_ttl})")
        self.max_token_ttl = max_token_ttl
        self._directory = directory
        self._clock = clock
        self._lock = threading.Lock()
        # Swapped whole, never mutated: readers see the old tuple or the new one.
        self._keys: tuple[SigningKey, ...] = (*(k for k in keys if k is not current[0]), current[0])

    @classmethod
    def generate(
        cls,
        alg: Algorithm = "EdDSA",
        *,
        max_token_ttl: float = DEFAULT_MAX_TOKEN_TTL,
        clock: Callable[[], float] = time.time,
    ) -> KeyRing:
        """A ring with one fresh key, held in memory only."""
        return cls(
            [SigningKey.generate(alg, now=clock())], max_token_ttl=max_token_ttl, clock=clock
        )

    @classmethod
    def open(
        cls,
        directory: Path | str,
        *,
        alg: Algorithm = "EdDSA",
        max_token_ttl: float = DEFAULT_MAX_TOKEN_TTL,
        clock: Callable[[], float] = time.time,
    ) -> KeyRing:
        """The ring kept in ``directory``, created there with one ``alg`` key if absent."""
        path = Path(directory)
        keys = keyfiles.load_keys(path)
        if keys is None:
            fresh = [SigningKey.generate(alg, now=clock())]
            keys = keyfiles.create_keys(path, fresh)
        return cls(keys, max_token_ttl=max_token_ttl, directory=path, clock=clock)

    @property
    def current(self) -> SigningKey:
        return self._keys[-1]

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """Every key still held, the current one last."""
        return self._keys

    def rotate(self, alg: Algorithm | None = None) -> SigningKey:
        """Make a fresh key current (same algorithm unless ``alg``); retire the old one."""
        with self._lock:
            now = self._clock()
            old = self.current
            retired = replace(
                old, retired_at=now, keep_until=now + self.max_token_ttl + RETENTION_GRACE
            )
            fresh = SigningKey.generate(alg or old.alg, now=now)
            kept = [key for key in self._keys[:-1] if not _lapsed(key, now)]
            keys = (*kept, retired, fresh)
            if self._directory is not None:
                keyfiles.save_keys(self._directory, keys)
            self._keys = keys
            return fresh

    def published(self) -> tuple[SigningKey, ...]:
        """The keys verifiers must know now: the current one and those not yet lapsed."""
        now = self._clock()
        return tuple(key for key in self._keys if not _lapsed(key, now))

    def jwks(self) -> dict[str, Any]:
        """The JWKS document (RFC 7517) to publish at the platform's jwks_uri."""
        return {"keys": [key.jwk() for key in self.published()]}


def _lapsed(key: SigningKey, now: float) -> bool:
    return key.keep_until is not None and key.keep_until <= now
