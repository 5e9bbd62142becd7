"""The Manager: runs informers, controllers and other runnables as one unit.

``await manager.run(stop)`` is the whole lifecycle (controller-runtime's manager):

1. start one informer per kind that anything asked for (shared by every controller);
2. wait until every informer has loaded its first list, so no controller acts on a partial
   view of the world;
3. start the runnables that run in every replica, then those that need leadership: directly,
   or, with leader election on, only while this process holds the lease (stopped at once when
   it loses it, started again if it wins it back);
4. when ``stop`` is set: stop everything (in-flight reconciles get ``graceful_shutdown_timeout``
   to finish, then are cancelled), close every watch and return. If a runnable fails, the
   manager stops the rest and re-raises its error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from corral.api.registry import lookup_kind
from corral.controlplane.controller import Controller
from corral.controlplane.informer import Informer
from corral.controlplane.leader import LeaderElector
from corral.controlplane.loop import ReconcileLoop
from corral.controlplane.metrics import ControlPlaneMetrics, metrics_for
from corral.controlplane.runnable import Runnable, needs_leader_election
from corral.store.protocol import Store

logger = logging.getLogger(__name__)


class Manager:
    def __init__(
        self,
        store: Store,
        *,
        identity: str,
        leader_election: bool = False,
        lease_namespace: str = "corral-system",
        lease_name: str = "corral-controllers",
        registry: CollectorRegistry | None = None,
        graceful_shutdown_timeout: float = 30.0,
    ) -> None:
        if not identity:
            raise ValueError("Manager needs a non-empty identity (e.g. hostname-pid)")
        self.store = store
        self.identity = identity
        self.metrics: ControlPlaneMetrics = metrics_for(registry)
        self._graceful_shutdown_timeout = graceful_shutdown_timeout
        self._informers: dict[str, Informer] = {}
        self._everywhere: list[Runnable] = []
        self._leading_only: list[Runnable] = []
        self._controller_names: set[str] = set()
        self._elector = (
            LeaderElector(
                store,
                identity=identity,
                namespace=lease_namespace,
                name=lease_name,
                metrics=self.metrics,
            )
            if leader_election
            else None
        )
        self._started = False
        self._synced = False
        self._leading = False

    @property
    def ready(self) -> bool:
        """Caches synced and, with leader election on, this process leads."""
        return self._synced and self.is_leader

    @property
    def is_leader(self) -> bool:
        """Whether leader-only runnables run here now (always, once started, without election)."""
        return self._elector.is_leader if self._elector is not None else self._leading

    def informer(self, kind: str) -> Informer:
        """The shared informer of ``kind`` (kind name, plural or short name)."""
        info = lookup_kind(kind)
        if info is None:
            raise ValueError(f"unknown kind {kind!r} (not in the kind registry)")
        existing = self._informers.get(info.kind)
        if existing is not None:
            return existing
        self._refuse_after_start(f"an informer for {info.kind}")
        created = Informer(self.store, info.kind)
        self._informers[info.kind] = created
        return created

    def add(self, item: Controller | Runnable) -> None:
        """Add a controller definition or any runnable; only before :meth:`run`."""
        self._refuse_after_start(f"{item!r}")
        if isinstance(item, Controller):
            if item.name in self._controller_names:
                raise ValueError(f"a controller named {item.name!r} is already added")
            self._controller_names.add(item.name)
            loop = ReconcileLoop(
                item.name,
                item.reconciler,
                item.sources(self.informer),
                self.metrics,
                workers=item.max_concurrent_reconciles,
                channels=item.channels,
                on_stop=item.on_stop,
            )
            self._place(loop, item.needs_leader_election)
            return
        if not isinstance(item, Runnable):
            raise TypeError(f"{item!r} is neither a Controller nor a runnable with start(stop)")
        self._place(item, needs_leader_election(item))

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (see the module docstring); usable once."""
        self._refuse_after_start("run() a second time")
        self._started = True
        halt = asyncio.Event()
        tasks: list[asyncio.Task[None]] = [
            asyncio.create_task(informer.start(halt), name=f"informer-{kind}")
            for kind, informer in self._informers.items()
        ]
        try:
            if not await self._wait_for_sync(stop, tasks):
                return
            self._synced = True
            logger.info("caches synced", extra={"identity": self.identity})
            tasks += [asyncio.create_task(r.start(halt)) for r in self._everywhere]
            if self._elector is not None:
                tasks.append(asyncio.create_task(self._elector.run(halt, self._lead)))
            else:
                tasks.append(asyncio.create_task(self._lead(halt)))
            await _first_of(stop, tasks)
        finally:
            halt.set()
            await self._shut_down(tasks)
            self._synced = False
        _raise_first_failure(tasks)

    async def _lead(self, term_stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(r.start(term_stop)) for r in self._leading_only]
        self._leading = True
        try:
            await _first_of(term_stop, tasks)
            term_stop.set()
            await asyncio.gather(*tasks)
        finally:
            self._leading = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _wait_for_sync(self, stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> bool:
        """True once every informer synced; False when stopped first or an informer failed."""
        synced = asyncio.ensure_future(
            asyncio.gather(*(informer.wait_for_sync() for informer in self._informers.values()))
        )
        stopper = asyncio.ensure_future(stop.wait())
        waiting: list[asyncio.Future[Any]] = [*tasks, synced, stopper]
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (synced, stopper):
                waiter.cancel()
            await asyncio.gather(synced, stopper, return_exceptions=True)
        return synced.done() and not synced.cancelled() and not stop.is_set()

    async def _shut_down(self, tasks: list[asyncio.Task[None]]) -> None:
        pending = [task for task in tasks if not task.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self._graceful_shutdown_timeout)
            for task in late:
                logger.warning("runnable did not stop in time; cancelling", extra={"task": task})
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _place(self, runnable: Runnable, leader_only: bool) -> None:
        (self._leading_only if leader_only else self._everywhere).append(runnable)

    def _refuse_after_start(self, what: str) -> None:
        if self._started:
            raise RuntimeError(f"cannot add {what}: the manager is already running")


async def _first_of(stop: asyncio.Event, tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Wait until ``stop`` is set or any task finishes with an error."""
    stopper = asyncio.ensure_future(stop.wait())
    pending: set[asyncio.Future[Any]] = {*tasks, stopper}
    try:
        while not stopper.done():
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(
                not f.cancelled() and f.exception() is not None for f in done if f is not stopper
            ):
                return
            if not pending - {stopper} and stopper in pending and tasks:
                # Every runnable ended on its own: nothing is left to run.
                return
    finally:
        stopper.cancel()
        await asyncio.gather(stopper, return_exceptions=True)


def _raise_first_failure(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        error = task.exception() if task.done() and not task.cancelled() else None
        if error is not None:
            raise error
