"""The reconcile loop: event sources fill a workqueue, N workers drain it through a reconciler.

This is the one place that turns a reconcile's outcome into what happens next (DESIGN.md §7):
requeue or not, backoff, metrics and log fields. Controllers and the garbage collector both
run on it; they differ only in their sources (which informer events map to which keys) and
their reconcile function.

Outcomes, as controller-runtime has them:

- returns ``Result()``: forget the key's backoff (``result="success"``);
- returns ``Result(requeue_after=s)``: forget the backoff, add the key again after ``s``
  (``requeue_after``);
- raises :class:`TerminalError`: forget the backoff and wait for the next event
  (``terminal_error``);
- raises anything else: add the key again after its backoff (``error``).

A worker survives every outcome; only cancellation (leadership lost, shutdown) ends it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from corral.api.objects import ObjectKey
from corral.controlplane.channel import KeyChannel
from corral.controlplane.informer import Informer, InformerEvent
from corral.controlplane.metrics import ControlPlaneMetrics
from corral.controlplane.ratelimit import RetryRateLimiter
from corral.controlplane.result import Reconciler, Result, TerminalError
from corral.controlplane.workqueue import WorkQueue

logger = logging.getLogger("corral.controlplane.reconcile")

EventMapper = Callable[[InformerEvent], Iterable[ObjectKey]]
"""Which keys an informer event should reconcile."""


@dataclass(frozen=True)
class Source:
    informer: Informer
    mapper: EventMapper


class ReconcileLoop:
    """Runs one named reconciler over the keys its sources produce, ``workers`` at a time."""

    def __init__(
        self,
        name: str,
        reconcile: Reconciler,
        sources: list[Source],
        metrics: ControlPlaneMetrics,
        *,
        workers: int = 1,
        channels: Sequence[KeyChannel] = (),
        on_stop: Callable[[], Awaitable[None]] | None = None,
        rate_limiter_factory: Callable[[], RetryRateLimiter] = RetryRateLimiter,
    ) -> None:
        if workers < 1:
            raise ValueError(f"controller {name!r}: workers must be >= 1 (got {workers})")
        self.name = name
        self._reconcile = reconcile
        self._sources = sources
        self._metrics = metrics
        self._workers = workers
        self._channels = tuple(channels)
        self._on_stop = on_stop
        self._rate_limiter_factory = rate_limiter_factory
        self._queue: WorkQueue[ObjectKey] | None = None

    @property
    def queue(self) -> WorkQueue[ObjectKey] | None:
        """The live queue while running (each start gets a fresh one), else None."""
        return self._queue

    async def start(self, stop: asyncio.Event) -> None:
        for source in self._sources:
            await source.informer.wait_for_sync()
        depth = self._metrics.queue_depth.labels(self.name)
        queue: WorkQueue[ObjectKey] = WorkQueue(
            self._rate_limiter_factory(), on_depth_change=depth.set
        )
        self._queue = queue
        # Registering replays every cached object, so a (re)started loop sees the whole world.
        registrations = [
            source.informer.add_handler(_enqueue_mapped(queue, source.mapper)).remove
            for source in self._sources
        ]
        registrations += [channel.subscribe(queue.add) for channel in self._channels]
        workers = [
            asyncio.create_task(self._work(queue), name=f"{self.name}-worker-{index}")
            for index in range(self._workers)
        ]
        try:
            await stop.wait()
            _stop_feeding(registrations, queue)
            await asyncio.gather(*workers)  # in-flight reconciles finish; the rest are dropped
        finally:
            _stop_feeding(registrations, queue)
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            depth.set(0)
            self._queue = None
            if self._on_stop is not None:
                await self._run_on_stop(self._on_stop)

    async def _run_on_stop(self, hook: Callable[[], Awaitable[None]]) -> None:
        try:
            await hook()
        except Exception:
            # Stopping goes on regardless; the hook's failure is the hook's to report.
            logger.exception("controller on_stop hook failed", extra={"controller": self.name})

    async def _work(self, queue: WorkQueue[ObjectKey]) -> None:
        while (key := await queue.get()) is not None:
            try:
                await self._process(queue, key)
            except Exception:
                # Only a bug in the bookkeeping itself gets here; the worker must outlive it.
                logger.exception("reconcile bookkeeping failed", extra={"controller": self.name})
                queue.add_rate_limited(key)
            finally:
                queue.done(key)

    async def _process(self, queue: WorkQueue[ObjectKey], key: ObjectKey) -> None:
        fields: dict[str, object] = {
            "controller": self.name,
            "key": str(key),
            "kind": key.kind,
            "namespace": key.namespace,
            "object_name": key.name,
            "retries": queue.retries(key),
        }
        active = self._metrics.active_workers.labels(self.name)
        active.inc()
        started = time.perf_counter()
        try:
            result = await self._reconcile(key)
            if not isinstance(result, Result):
                raise TypeError(
                    f"reconciler of {self.name!r} returned {result!r}; it must return Result"
                )
        except TerminalError as error:
            queue.forget(key)
            outcome = "terminal_error"
            logger.error(
                "reconcile failed terminally; not retrying until the object changes: %s",
                error,
                extra={**fields, "result": outcome, "error": str(error)},
            )
        except Exception as error:
            queue.add_rate_limited(key)
            self._metrics.queue_retries.labels(self.name).inc()
            outcome = "error"
            logger.warning(
                "reconcile failed; retrying with backoff: %s",
                error,
                exc_info=True,
                extra={**fields, "result": outcome, "error": str(error)},
            )
        else:
            queue.forget(key)
            if result.requeue_after is None:
                outcome = "success"
            else:
                outcome = "requeue_after"
                queue.add_after(key, result.requeue_after)
                fields["requeue_after_s"] = result.requeue_after
            logger.debug("reconciled", extra={**fields, "result": outcome})
        finally:
            active.dec()
        elapsed = time.perf_counter() - started
        self._metrics.reconcile_total.labels(self.name, outcome).inc()
        self._metrics.reconcile_duration.labels(self.name).observe(elapsed)


def _enqueue_mapped(
    queue: WorkQueue[ObjectKey], mapper: EventMapper
) -> Callable[[InformerEvent], None]:
    def enqueue(event: InformerEvent) -> None:
        for key in mapper(event):
            queue.add(key)

    return enqueue


def _stop_feeding(unsubscribes: list[Callable[[], None]], queue: WorkQueue[ObjectKey]) -> None:
    for unsubscribe in unsubscribes:
        unsubscribe()
    queue.shutdown()
