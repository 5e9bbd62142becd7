"""Leader election on a ``Lease`` object, through the store's optimistic concurrency.

Many replicas run the same controllers; only the holder of the lease runs them (client-go's
leaderelection, same record). A candidate reads the lease and takes it when it is free or
expired, writing with the resourceVersion it read, so of two candidates only one update wins
(the other gets ``Conflict``). The holder renews every ``retry_period``.

Expiry is judged on the local monotonic clock from the moment this process last *saw the
record change*, never from the timestamps written in it, so clock skew between machines cannot
make two leaders. The holder gives up at once when it sees someone else in the lease or when
``renew_deadline`` passes without a successful renewal; the deadline is shorter than the lease
duration, so a stalled leader stops before anyone else may start. With the defaults (10 s lease,
8 s deadline, 2 s retry) a dead leader is replaced within about 12 s.

A leader that stops cleanly lets its work finish (still renewing), then clears the holder so a
successor takes over at its next retry instead of waiting out the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from corral.api.errors import AlreadyExists, Conflict, NotFound
from corral.api.objects import API_VERSION, Object, now_rfc3339
from corral.controlplane.metrics import ControlPlaneMetrics
from corral.store.protocol import Store

logger = logging.getLogger(__name__)

LEASE_KIND = "Lease"

LeaderWork = Callable[[asyncio.Event], Awaitable[None]]
"""What runs while leading; it returns promptly once its event is set (a clean stop)."""


class LeaderElector:
    def __init__(
        self,
        store: Store,
        *,
        identity: str,
        namespace: str = "corral-system",
        name: str = "corral-controllers",
        lease_duration: float = 10.0,
        renew_deadline: float = 8.0,
        retry_period: float = 2.0,
        metrics: ControlPlaneMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not identity:
            raise ValueError("leader election needs a non-empty identity")
        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ValueError(
                "leader election needs 0 < retry_period < renew_deadline < lease_duration "
                f"(got {retry_period}, {renew_deadline}, {lease_duration})"
            )
        self.identity = identity
        self.namespace = namespace
        self.name = name
        self._store = store
        self._lease_seconds = max(1, math.ceil(lease_duration))
        self._renew_deadline = renew_deadline
        self._retry_period = retry_period
        self._clock = clock
        self._leading = False
        self._held_by_other = False
        self._observed_version: str | None = None
        self._observed_at = 0.0
        self._gauge = None if metrics is None else metrics.leader.labels(f"{namespace}/{name}")

    @property
    def is_leader(self) -> bool:
        return self._leading

    async def run(self, stop: asyncio.Event, lead: LeaderWork) -> None:
        """Until ``stop``: win the lease, run ``lead`` while holding it, and stop it on loss.

        Re-raises the error of a ``lead`` that failed (after letting the lease go).
        """
        while not stop.is_set():
            if not await self._acquire(stop):
                return
            term_stop = asyncio.Event()
            term = asyncio.ensure_future(lead(term_stop))
            self._set_leading(True)
            logger.info("became leader", extra=self._fields())
            try:
                kept = await self._hold(stop, term, term_stop)
            finally:
                if not term.done():
                    term.cancel()  # leadership lost: stop acting now, not after a drain
                await asyncio.gather(term, return_exceptions=True)
                self._set_leading(False)
            if not kept:
                logger.error("lost leadership; controllers stopped", extra=self._fields())
                continue
            await self._release()
            error = None if term.cancelled() else term.exception()
            if error is not None:
                raise error
            return

    async def _acquire(self, stop: asyncio.Event) -> bool:
        while not stop.is_set():
            try:
                if await self._try_acquire_or_renew():
                    return True
            except Exception:
                logger.warning("could not read or write the lease", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._retry_period)
        return False

    async def _hold(
        self, stop: asyncio.Event, term: asyncio.Future[None], term_stop: asyncio.Event
    ) -> bool:
        """Renew until ``term`` ends (True) or the lease is lost (False)."""
        renewed_at = self._clock()
        next_renewal = renewed_at + self._retry_period
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while True:
                now = self._clock()
                remaining = renewed_at + self._renew_deadline - now
                if remaining <= 0:
                    return False
                if now >= next_renewal:
                    if await self._renew(remaining):
                        renewed_at = now  # the attempt's start: never later than others saw it
                    elif self._held_by_other:
                        return False
                    next_renewal = self._clock() + self._retry_period
                    continue
                waiting: set[asyncio.Future[Any]] = {term} if stopper.done() else {term, stopper}
                await asyncio.wait(
                    waiting,
                    timeout=min(next_renewal - now, remaining),
                    return_when="FIRST_COMPLETED",
                )
                if term.done():
                    return True
                if stopper.done() and not term_stop.is_set():
                    term_stop.set()  # let the work drain while the lease is still renewed
        finally:
            stopper.cancel()
            await asyncio.gather(stopper, return_exceptions=True)

    async def _renew(self, deadline: float) -> bool:
        try:
            return await asyncio.wait_for(self._try_acquire_or_renew(), timeout=deadline)
        except TimeoutError:
            logger.warning("lease renewal timed out", extra=self._fields())
        except Exception:
            logger.warning("lease renewal failed", exc_info=True, extra=self._fields())
        return False

    async def _try_acquire_or_renew(self) -> bool:
        now = now_rfc3339()
        try:
            lease = await self._store.get(LEASE_KIND, self.namespace, self.name)
        except NotFound:
            return await self._create(now)
        self._observe(lease)
        spec = dict(lease.get("spec") or {})
        holder = str(spec.get("holderIdentity") or "")
        duration = _positive_int(spec.get("leaseDurationSeconds"), self._lease_seconds)
        if holder and holder != self.identity and self._clock() < self._observed_at + duration:
            self._held_by_other = True
            return False
        self._held_by_other = False
        if holder != self.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = _positive_int(spec.get("leaseTransitions"), 0) + 1
        spec.update(
            holderIdentity=self.identity, leaseDurationSeconds=self._lease_seconds, renewTime=now
        )
        try:
            updated = await self._store.update({**lease, "spec": spec}, actor=self._actor)
        except (Conflict, NotFound):
            return False  # someone else wrote first; look again at the next retry
        self._observe(updated)
        return True

    async def _create(self, now: str) -> bool:
        lease: Object = {
            "apiVersion": API_VERSION,
            "kind": LEASE_KIND,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self._lease_seconds,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        try:
            created = await self._store.create(lease, actor=self._actor)
        except AlreadyExists:
            return False
        self._held_by_other = False
        self._observe(created)
        return True

    async def _release(self) -> None:
        try:
            lease = await self._store.get(LEASE_KIND, self.namespace, self.name)
            spec = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return
            spec.update(holderIdentity="", renewTime=now_rfc3339())
            await self._store.update({**lease, "spec": spec}, actor=self._actor)
            logger.info("released the lease", extra=self._fields())
        except Exception:
            # Not fatal: the successor waits out the lease instead of taking it at once.
            logger.warning("could not release the lease", exc_info=True, extra=self._fields())

    def _observe(self, lease: Object) -> None:
        version = str((lease.get("metadata") or {}).get("resourceVersion") or "")
        if version != self._observed_version:
            self._observed_version = version
            self._observed_at = self._clock()

    def _set_leading(self, leading: bool) -> None:
        self._leading = leading
        if self._gauge is not None:
            self._gauge.set(1 if leading else 0)

    @property
    def _actor(self) -> str:
        return f"leader-election:{self.identity}"

    def _fields(self) -> dict[str, object]:
        return {"identity": self.identity, "lease": f"{self.namespace}/{self.name}"}


def _positive_int(value: object, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return default
