"""``ReplayCache``: remembers the ``jti`` of single-use tokens until they could expire.

Shared by successive ``Verifier`` snapshots (a JWKS swap must not reopen the door to a replay).
Bounded: entries leave in expiry order through a heap, and when every slot holds a token that
is still live the cache refuses new single-use tokens rather than forget one: failing closed
is the point of single use. It is per process; gateways behind a balancer need the same ``jti``
to reach one cache (or a shared one).
"""

from __future__ import annotations

import heapq
import threading

from corral.identity.errors import InvalidToken

DEFAULT_MAX_ENTRIES = 100_000


class ReplayCache:
    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1 (got {max_entries})")
        self.max_entries = max_entries
        self._forget_at: dict[str, float] = {}
        self._by_expiry: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._forget_at)

    def record(self, jti: str, forget_at: float, now: float) -> None:
        """Note ``jti`` as used until ``forget_at``; InvalidToken if it was used already."""
        with self._lock:
            while self._by_expiry and self._by_expiry[0][0] <= now:
                _, stale = heapq.heappop(self._by_expiry)
                self._forget_at.pop(stale, None)
            if jti in self._forget_at:
                raise InvalidToken("replayed", f"jti {jti!r} was already used")
            if len(self._forget_at) >= self.max_entries:
                raise InvalidToken(
                    "replay-cache-full",
                    f"all {self.max_entries} replay slots hold live tokens; retry once some expire",
                )
            self._forget_at[jti] = forget_at
            heapq.heappush(self._by_expiry, (forget_at, jti))
