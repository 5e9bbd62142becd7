"""The Manager's lifecycle: caches first, then workers; a clean stop; failures surface."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from corral.api.objects import ObjectKey
from corral.controlplane import Controller, Manager, Result
from corral.store import Store

from .helpers import eventually, model, running


class Probe:
    """A runnable that records what it saw when it started, and whether it was stopped."""

    needs_leader_election = False

    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self.cached_at_start: list[str] | None = None
        self.stopped = False

    async def start(self, stop: asyncio.Event) -> None:
        informer = self.manager.informer("Model")
        self.cached_at_start = [o["metadata"]["name"] for o in informer.list()]
        await stop.wait()
        self.stopped = True


class Broken:
    needs_leader_election = False

    async def start(self, _stop: asyncio.Event) -> None:
        raise RuntimeError("the probe's disk is full")


async def test_runnables_start_after_the_caches_sync_and_stop_with_the_manager(
    store: Store, registry: CollectorRegistry
) -> None:
    for name in ("a", "b", "c"):
        await store.create(model(name))
    manager = Manager(store, identity="test", registry=registry)
    probe = Probe(manager)
    manager.informer("Model")
    manager.add(probe)
    assert not manager.ready
    async with running(manager) as run:
        await eventually(lambda: manager.ready, what="the manager to be ready")
        assert probe.cached_at_start == ["a", "b", "c"]
        with pytest.raises(RuntimeError, match="already running"):
            manager.add(probe)
    assert run.done()
    assert probe.stopped
    assert not manager.ready


async def test_a_failing_runnable_stops_the_manager_with_its_error(
    store: Store, registry: CollectorRegistry
) -> None:
    async def reconcile(_key: ObjectKey) -> Result:
        return Result()

    manager = Manager(store, identity="test", registry=registry)
    manager.add(Controller("models", for_kind="Model", reconciler=reconcile))
    manager.add(Broken())
    with pytest.raises(RuntimeError, match="disk is full"):
        await asyncio.wait_for(manager.run(asyncio.Event()), 10)
    assert not manager.ready


async def test_controllers_must_be_named_uniquely(
    store: Store, registry: CollectorRegistry
) -> None:
    async def reconcile(_key: ObjectKey) -> Result:
        return Result()

    manager = Manager(store, identity="test", registry=registry)
    manager.add(Controller("models", for_kind="Model", reconciler=reconcile))
    with pytest.raises(ValueError, match="already added"):
        manager.add(Controller("models", for_kind="Endpoint", reconciler=reconcile))
    with pytest.raises(TypeError, match="neither a Controller nor a runnable"):
        manager.add(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="identity"):
        Manager(store, identity="")
