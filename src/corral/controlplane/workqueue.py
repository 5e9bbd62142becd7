"""The workqueue between event sources and reconcile workers (client-go's rate-limited queue).

Three guarantees the rest of the runtime relies on:

- a key added while it waits is queued once (events for one object collapse into one
  reconcile, which re-reads state anyway);
- a key is handed to at most one worker at a time: added while being processed, it is marked
  dirty and queued again when that worker calls :meth:`WorkQueue.done`;
- delayed adds (``requeue_after``, backoff) keep only the earliest pending time per key.

``add`` and friends are synchronous so informer event handlers can call them directly; only
:meth:`WorkQueue.get` waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from corral.controlplane.ratelimit import RetryRateLimiter

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(
        self,
        rate_limiter: RetryRateLimiter | None = None,
        *,
        on_depth_change: Callable[[int], None] | None = None,
    ) -> None:
        self._rate_limiter = rate_limiter or RetryRateLimiter()
        self._on_depth_change = on_depth_change
        self._ready: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._delayed: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False

    def __len__(self) -> int:
        return len(self._ready)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # done() queues it again, so two workers never hold the same key
        self._ready.append(key)
        self._depth_changed()
        self._wake_one()

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` after ``delay`` seconds; an earlier pending add for the key wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._delayed.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        self._delayed[key] = (due, loop.call_at(due, self._fire_delayed, key))

    def add_rate_limited(self, key: K) -> None:
        """Retry ``key`` after its backoff (see :mod:`corral.controlplane.ratelimit`)."""
        self.add_after(key, self._rate_limiter.when(key))

    def forget(self, key: K) -> None:
        """The key succeeded (or gave up): its next failure starts from the shortest backoff."""
        self._rate_limiter.forget(key)

    def retries(self, key: K) -> int:
        return self._rate_limiter.retries(key)

    async def get(self) -> K | None:
        """The next key to process (now owned by the caller until ``done``); None on shutdown.

        Keys still queued at shutdown are dropped: the next leader or process relists anyway.
        """
        while not self._ready or self._shutting_down:
            if self._shutting_down:
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and self._ready:
                    self._wake_one()  # pass on the wake-up this cancelled worker received
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        key = self._ready.popleft()
        self._depth_changed()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty and not self._shutting_down:
            self._ready.append(key)
            self._depth_changed()
            self._wake_one()

    def shutdown(self) -> None:
        """Stop handing out keys: waiting ``get`` calls return None; pending delays are dropped."""
        self._shutting_down = True
        for _, handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _fire_delayed(self, key: K) -> None:
        self._delayed.pop(key, None)
        self.add(key)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _depth_changed(self) -> None:
        if self._on_depth_change is not None:
            self._on_depth_change(len(self._ready))
