"""``KeyIndex``: the gateway's in-memory answer to "whose API key is this?".

The gateway compiles one from the store's ApiKey and Team objects whenever either changes and
swaps the reference (like the route table), so a request never queries the store: it finds the
candidate by the key's public prefix (one dict lookup), recomputes the salted hash and compares
in constant time. Revoked keys, keys of missing teams and keys being deleted never enter a
snapshot, so revocation takes effect with the next swap; expiry is checked per request, since a
snapshot can outlive a key's ``expiresAt``.
"""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from pydantic import ValidationError

from corral.api import Object, ObjectKey, object_key
from corral.api.kinds.apikey import APIKEY, ApiKeySpec
from corral.api.kinds.team import TEAM, TeamSpec
from corral.identity.apikeys import key_prefix
from corral.identity.principal import Principal

DEFAULT_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class _Credential:
    salt: bytes
    digest: bytes
    expires_at: float | None
    principal: Principal


class KeyIndex:
    """An immutable snapshot of the valid API keys; build a new one to change it."""

    __slots__ = ("_by_prefix", "_cache", "_cache_size", "problems")

    def __init__(
        self,
        by_prefix: Mapping[str, tuple[_Credential, ...]],
        problems: tuple[str, ...] = (),
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be 0 or more (got {cache_size})")
        self._by_prefix = dict(by_prefix)
        self.problems = problems
        """Why some objects gave no key (for the gateway's log); those keys are refused."""
        self._cache_size = cache_size
        # Bearer → credential for keys already verified in this snapshot. A new snapshot starts
        # empty, which is what makes a revocation take effect at the swap.
        self._cache: dict[str, _Credential] = {}

    @classmethod
    def build(
        cls,
        api_keys: Iterable[Object],
        teams: Iterable[Object],
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> KeyIndex:
        """Index ``api_keys`` (ApiKey objects) for the ``teams`` (Team objects) they name."""
        team_labels: dict[tuple[str, str], Mapping[str, str]] = {}
        for team in teams:
            key = _expect_kind(team, TEAM.kind)
            team_spec = TeamSpec.model_validate(team.get("spec") or {})
            team_labels[(key.namespace, key.name)] = MappingProxyType(dict(team_spec.labels))
        by_prefix: dict[str, list[_Credential]] = {}
        problems: list[str] = []
        for api_key in api_keys:
            key = _expect_kind(api_key, APIKEY.kind)
            try:
                spec = ApiKeySpec.model_validate(api_key.get("spec") or {})
            except ValidationError as error:
                problems.append(f"{key}: invalid spec: {error.errors(include_url=False)}")
                continue
            if spec.revoked or (api_key.get("metadata") or {}).get("deletionTimestamp"):
                continue
            labels = team_labels.get((key.namespace, spec.team))
            if labels is None:
                problems.append(f"{key}: team {spec.team!r} does not exist in {key.namespace!r}")
                continue
            principal = Principal(
                kind="team-key",
                id=f"{key.namespace}/{key.name}",
                team=spec.team,
                namespace=key.namespace,
                labels=labels,
            )
            expires_at = (
                datetime.fromisoformat(spec.expiresAt).timestamp() if spec.expiresAt else None
            )
            credential = _Credential(
                bytes.fromhex(spec.salt), bytes.fromhex(spec.hash), expires_at, principal
            )
            by_prefix.setdefault(spec.prefix, []).append(credential)
        return cls(
            {prefix: tuple(found) for prefix, found in by_prefix.items()},
            tuple(problems),
            cache_size=cache_size,
        )

    def __len__(self) -> int:
        return sum(len(found) for found in self._by_prefix.values())

    def authenticate(self, bearer: str, *, now: float | None = None) -> Principal | None:
        """The principal ``bearer`` (a plaintext key) belongs to, or None if it is not valid."""
        credential = self._cache.get(bearer)
        if credential is None:
            credential = self._verify(bearer)
            if credential is None:
                return None
            self._remember(bearer, credential)
        expires_at = credential.expires_at
        if expires_at is not None and (time.time() if now is None else now) >= expires_at:
            return None
        return credential.principal

    def _verify(self, bearer: str) -> _Credential | None:
        prefix = key_prefix(bearer)
        if prefix is None:
            return None
        candidates = self._by_prefix.get(prefix)
        if candidates is None:
            return None
        presented = bearer.encode()
        found = None
        # Prefixes are random, so two keys share one only by accident or by a hand-made
        # object; every candidate is checked so the time taken does not say which matched.
        for credential in candidates:
            digest = hmac.digest(credential.salt, presented, "sha256")
            if hmac.compare_digest(digest, credential.digest):
                found = credential
        return found

    def _remember(self, bearer: str, credential: _Credential) -> None:
        if self._cache_size == 0:
            return
        if len(self._cache) >= self._cache_size:
            # Dicts keep insertion order: drop the oldest entry. Another thread may race us to
            # it; losing that race only means the cache briefly holds one entry fewer.
            with contextlib.suppress(StopIteration, RuntimeError):
                self._cache.pop(next(iter(self._cache)), None)
        self._cache[bearer] = credential


def _expect_kind(obj: Object, kind: str) -> ObjectKey:
    key = object_key(obj)
    if key.kind != kind:
        raise ValueError(f"expected {kind} objects, got {key}")
    return key
