"""How long a failed key waits before its next try (client-go's default controller limiter).

Two limits, and a retry waits for the longer of them:

- per key, exponential: 5 ms after the first failure, doubling to a 5 minute cap, reset when
  the key succeeds (:meth:`RetryRateLimiter.forget`), so one broken object backs off alone;
- overall, a token bucket (10 retries/s, bursts of 100), so a mass failure (the database
  restarting) cannot turn every key into a hot retry loop at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

Clock = Callable[[], float]


class ExponentialBackoff:
    """Per-key delays: ``base * 2**failures``, capped at ``cap``."""

    def __init__(self, base: float = 0.005, cap: float = 300.0) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"backoff needs 0 < base <= cap (got base={base}, cap={cap})")
        self._base = base
        self._cap = cap
        self._failures: dict[Hashable, int] = {}

    def when(self, key: Hashable) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # Past 2**64 the float overflows long after the cap has been reached.
        return min(self._cap, self._base * 2.0 ** min(failures, 64))

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)


class TokenBucket:
    """Reservations against a bucket refilled at ``rate`` per second, holding ``burst``."""

    def __init__(self, rate: float = 10.0, burst: int = 100, clock: Clock = time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError(f"token bucket needs rate > 0 and burst >= 1 (got {rate}, {burst})")
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def reserve(self) -> float:
        """Take one token; returns how long the caller must wait for it (0 when available)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate


class RetryRateLimiter:
    """The delay for a key's next retry: the longer of its backoff and the overall bucket."""

    def __init__(
        self,
        backoff: ExponentialBackoff | None = None,
        bucket: TokenBucket | None = None,
    ) -> None:
        self._backoff = backoff or ExponentialBackoff()
        self._bucket = bucket or TokenBucket()

    def when(self, key: Hashable) -> float:
        return max(self._backoff.when(key), self._bucket.reserve())

    def forget(self, key: Hashable) -> None:
        self._backoff.forget(key)

    def retries(self, key: Hashable) -> int:
        return self._backoff.failures(key)
