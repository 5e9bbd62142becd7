"""The workqueue: one entry per waiting key, one worker per key, delays keep the earliest."""

from __future__ import annotations

import asyncio
from collections import Counter

from prometheus_client import CollectorRegistry

from corral.api.objects import ObjectKey
from corral.controlplane import Controller, Manager, Result, WorkQueue
from corral.store import Store

from .helpers import eventually, model, running

A = ObjectKey("Model", "default", "a")
B = ObjectKey("Model", "default", "b")


async def test_a_key_added_while_waiting_is_queued_once() -> None:
    queue: WorkQueue[ObjectKey] = WorkQueue()
    for _ in range(5):
        queue.add(A)
    queue.add(B)
    queue.add(A)
    assert len(queue) == 2
    assert await queue.get() == A
    assert await queue.get() == B
    assert len(queue) == 0


async def test_a_key_added_while_processing_waits_for_done() -> None:
    queue: WorkQueue[ObjectKey] = WorkQueue()
    queue.add(A)
    assert await queue.get() == A
    queue.add(A)
    queue.add(A)
    assert len(queue) == 0, "a key being processed must not be handed to a second worker"
    second_worker = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not second_worker.done()
    queue.done(A)
    assert await asyncio.wait_for(second_worker, 1) == A
    queue.done(A)
    assert len(queue) == 0, "adds during processing collapse into one re-queue"


async def test_delayed_adds_keep_the_earliest_time_and_shutdown_releases_workers() -> None:
    queue: WorkQueue[ObjectKey] = WorkQueue()
    queue.add_after(A, 60)
    queue.add_after(A, 0.01)
    queue.add_after(A, 30)
    assert await asyncio.wait_for(queue.get(), 5) == A
    queue.done(A)

    waiting = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0.01)
    queue.add_after(B, 60)
    queue.shutdown()
    assert await asyncio.gather(*waiting) == [None, None, None]
    queue.add(A)
    assert await queue.get() is None


async def test_one_object_is_never_reconciled_twice_at_once(
    store: Store, registry: CollectorRegistry
) -> None:
    in_flight: Counter[ObjectKey] = Counter()
    overlaps: list[ObjectKey] = []
    most_at_once = 0
    calls: Counter[ObjectKey] = Counter()
    versions_read: list[int] = []

    async def reconcile(key: ObjectKey) -> Result:
        nonlocal most_at_once
        if key == A:
            versions_read.append(int((await store.get(*key))["metadata"]["resourceVersion"]))
        in_flight[key] += 1
        if in_flight[key] > 1:
            overlaps.append(key)
        most_at_once = max(most_at_once, sum(in_flight.values()))
        try:
            await asyncio.sleep(0.02)
        finally:
            in_flight[key] -= 1
        calls[key] += 1
        return Result()

    for name in ("a", "b", "c", "d"):
        await store.create(model(name))
    manager = Manager(store, identity="test", registry=registry)
    manager.add(
        Controller("models", for_kind="Model", reconciler=reconcile, max_concurrent_reconciles=4)
    )
    async with running(manager):
        await eventually(lambda: len(calls) == 4, what="every model reconciled once")
        # A burst of changes to one object while it is being reconciled.
        for round_ in range(10):
            current = await store.get("Model", "default", "a")
            current["metadata"]["labels"] = {"round": str(round_)}
            await store.update(current)
        latest = int((await store.get("Model", "default", "a"))["metadata"]["resourceVersion"])
        await eventually(
            lambda: versions_read and max(versions_read) == latest,
            what="a reconcile that read the last update",
        )

    assert overlaps == []
    assert most_at_once > 1, "different objects should be reconciled concurrently"
    assert calls[A] >= 2
