"""The ResourceClaim controller on a real SQLite store: binding, lost nodes, bad claims, races.

The invariant under two schedulers: whatever order their reconciles interleave in, no device
is held beyond its capacity by the claims' allocations, and every allocation a claim shows is
in its Node's ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.api.errors import NotFound
from corral.api.objects import ObjectKey
from corral.controllers.resourceclaim import LEDGER, ClaimReconciler
from corral.controllers.resourceclaim_sources import object_name
from corral.controlplane import get_condition
from corral.store import open_store
from corral.store.protocol import Store
from device_fleet import claim, compile_selector, gpu_class, gpu_node


async def seeded(path: Path, nodes: list[dict[str, Any]]) -> Store:
    store = await open_store(f"sqlite:///{path / 'corral.db'}")
    await store.create(gpu_class())
    for node in nodes:
        await store.create(node)
    return store


def key(name: str) -> ObjectKey:
    return ObjectKey("ResourceClaim", "default", name)


async def status_of(store: Store, name: str) -> dict[str, Any]:
    return (await store.get("ResourceClaim", "default", name)).get("status") or {}


async def test_a_claim_is_bound_once_and_the_node_ledger_records_it(tmp_path: Path) -> None:
    store = await seeded(tmp_path, [gpu_node("n0", 4)])
    try:
        await store.create(claim("train", count=2))
        scheduler = ClaimReconciler(store, compile_selector)
        await scheduler(key("train"))
        status = await status_of(store, "train")
        results = status["allocation"]["devices"]["results"]
        assert status["allocation"]["nodeName"] == "n0"
        assert len(results) == 2
        assert get_condition(status, "Allocated")["status"] == "True"  # type: ignore[index]
        node = await store.get("Node", "", "n0")
        assert list(node["status"][LEDGER]) == ["default/train"]
        version = (await store.get("ResourceClaim", "default", "train"))["metadata"]
        await scheduler(key("train"))
        again = (await store.get("ResourceClaim", "default", "train"))["metadata"]
        assert again["resourceVersion"] == version["resourceVersion"]
    finally:
        await store.close()


async def test_a_deleted_claim_gives_its_devices_back(tmp_path: Path) -> None:
    store = await seeded(tmp_path, [gpu_node("n0", 2)])
    try:
        await store.create(claim("first", count=2))
        await store.create(claim("second", count=2))
        scheduler = ClaimReconciler(store, compile_selector)
        await scheduler(key("first"))
        await scheduler(key("second"))
        assert "allocation" not in await status_of(store, "second")
        await store.delete("ResourceClaim", "default", "first")
        await scheduler(key("first"))
        node = await store.get("Node", "", "n0")
        assert node["status"][LEDGER] == {}
        await scheduler(key("second"))
        assert (await status_of(store, "second"))["allocation"]["nodeName"] == "n0"
    finally:
        await store.close()


async def test_a_wiped_ledger_gives_nothing_away_and_is_written_back(tmp_path: Path) -> None:
    store = await seeded(tmp_path, [gpu_node("n0", 1)])
    try:
        await store.create(claim("x", count=1))
        scheduler = ClaimReconciler(store, compile_selector)
        await scheduler(key("x"))
        node = await store.get("Node", "", "n0")
        # Someone writes the Node's status without the scheduler's ledger in it.
        await store.update_status({**node, "status": {"conditions": []}})
        await scheduler.sync()
        assert scheduler.core.index.held["default/x"].node == "n0"
        assert "default/x" not in scheduler.core.queue
        await store.create(claim("y", count=1))
        await scheduler(key("y"))
        assert "allocation" not in await status_of(store, "y")
        await scheduler(key("x"))
        node = await store.get("Node", "", "n0")
        assert list(node["status"][LEDGER]) == ["default/x"]
        assert (await status_of(store, "x"))["allocation"]["nodeName"] == "n0"
    finally:
        await store.close()


async def test_a_vanished_node_sends_its_claims_back_to_pending(tmp_path: Path) -> None:
    store = await seeded(tmp_path, [gpu_node("n0", 2)])
    try:
        await store.create(claim("job", count=2))
        scheduler = ClaimReconciler(store, compile_selector)
        await scheduler(key("job"))
        await store.delete("Node", "", "n0")
        await scheduler(key("job"))
        status = await status_of(store, "job")
        assert "allocation" not in status
        allocated = get_condition(status, "Allocated")
        assert allocated is not None
        assert allocated["status"] == "False"
        await store.create(gpu_node("n1", 2))
        await scheduler(key("job"))
        assert (await status_of(store, "job"))["allocation"]["nodeName"] == "n1"
    finally:
        await store.close()


async def test_impossible_and_unreadable_claims_get_unschedulable(tmp_path: Path) -> None:
    store = await seeded(tmp_path, [gpu_node("n0", 2)])
    try:
        await store.create(claim("huge", count=64))
        bad = claim("bad")
        bad["spec"]["devices"]["requests"][0]["exactly"]["count"] = -1
        await store.create(bad)
        scheduler = ClaimReconciler(store, compile_selector)
        await scheduler(key("huge"))
        await scheduler(key("bad"))
        huge = get_condition(await status_of(store, "huge"), "Unschedulable")
        assert huge is not None
        assert huge["reason"] == "NoNodeCanEverFit"
        assert "could ever" in huge["message"]
        invalid = get_condition(await status_of(store, "bad"), "Unschedulable")
        assert invalid is not None
        assert invalid["reason"] == "InvalidClaim"
        assert "count" in invalid["message"]
    finally:
        await store.close()


async def test_preemption_is_recorded_on_both_claims(tmp_path: Path) -> None:
    store = await seeded(tmp_path, [gpu_node("n0", 2)])
    try:
        await store.create(claim("low", count=2))
        scheduler = ClaimReconciler(store, compile_selector)
        await scheduler(key("low"))
        await store.create(claim("high", count=2, priority=10))
        await scheduler(key("high"))
        high, low = await status_of(store, "high"), await status_of(store, "low")
        allocated = get_condition(high, "Allocated")
        assert allocated is not None
        assert allocated["reason"] == "AllocatedAfterPreemption"
        assert "default/low" in allocated["message"]
        preempted = get_condition(low, "Preempted")
        assert preempted is not None
        assert preempted["status"] == "True"
        assert "default/high" in preempted["message"]
        assert "allocation" not in low
        node = await store.get("Node", "", "n0")
        assert list(node["status"][LEDGER]) == ["default/high"]
    finally:
        await store.close()


class LaggingCache:
    """A scheduler's cache that saw the store once and nothing since (an informer far behind)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._listed: set[str] = set()

    async def changed(self, kind: str) -> dict[str, Any]:
        if kind in self._listed:
            return {}
        self._listed.add(kind)
        items = (await self._store.list(kind)).items
        return {object_name(kind, obj): obj for obj in items}

    def forget(self, kind: str, name: str) -> None:
        del kind, name


async def test_a_scheduler_with_a_stale_view_loses_the_device_and_rereads(tmp_path: Path) -> None:
    store = await seeded(tmp_path, [gpu_node("n0", 1)])
    try:
        await store.create(claim("first", count=1))
        behind = ClaimReconciler(store, compile_selector, source=LaggingCache(store))
        await behind.sync()
        current = ClaimReconciler(store, compile_selector)
        await current(key("first"))
        assert (await status_of(store, "first"))["allocation"]["nodeName"] == "n0"
        await store.create(claim("second", count=1))
        # behind still sees gpu0 free: its ledger write is refused, it re-reads, second waits.
        await behind(key("second"))
        status = await status_of(store, "second")
        assert "allocation" not in status
        waiting = get_condition(status, "Allocated")
        assert waiting is not None
        assert waiting["reason"] == "WaitingForDevices"
        node = await store.get("Node", "", "n0")
        assert list(node["status"][LEDGER]) == ["default/first"]
    finally:
        await store.close()


async def check_capacity(store: Store, *, settled: bool = False) -> int:
    """Sum every claim's allocation per device; return how many claims are bound.

    Until ``settled``, a claim may still name a node deleted since (no device to over-commit).
    """
    nodes = {n["metadata"]["name"]: n for n in (await store.list("Node")).items}
    whole: dict[tuple[str, str], int] = {}
    shared: dict[tuple[str, str], Fraction] = {}
    bound = 0
    for obj in (await store.list("ResourceClaim")).items:
        allocation = (obj.get("status") or {}).get("allocation")
        if not allocation:
            continue
        if allocation["nodeName"] not in nodes:
            assert not settled, f"{obj['metadata']['name']} still allocated on a deleted node"
            continue
        bound += 1
        node = nodes[allocation["nodeName"]]
        name = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        assert name in node["status"][LEDGER], f"{name} allocated but not in the ledger"
        for result in allocation["devices"]["results"]:
            device = (allocation["nodeName"], result["device"])
            if "consumedCapacity" in result:
                milli = Fraction(result["consumedCapacity"]["compute"].rstrip("m")) / 1000
                shared[device] = shared.get(device, Fraction(0)) + milli
            else:
                whole[device] = whole.get(device, 0) + 1
    for device, count in whole.items():
        assert count == 1, f"{device} given whole to {count} claims"
        assert device not in shared, f"{device} given whole and shared"
    for device, amount in shared.items():
        assert amount <= 1, f"{device} shared beyond its capacity: {amount}"
    return bound


async def race(path: Path, seed: int, claims: int, nodes: int) -> None:
    rng = random.Random(seed)
    store = await seeded(path, [gpu_node(f"n{i}", 2) for i in range(nodes)])
    try:
        names = []
        for i in range(claims):
            share = rng.choice((None, "500m", "300m"))
            await store.create(claim(f"c{i}", share=share, count=1 if share else rng.randint(1, 2)))
            names.append(f"c{i}")
        # Two connections to one database file, as two scheduler processes would have.
        other = await open_store(f"sqlite:///{path / 'corral.db'}")
        first = ClaimReconciler(store, compile_selector, actor="scheduler-a")
        second = ClaimReconciler(other, compile_selector, actor="scheduler-b")
        for _ in range(2):
            # Mostly different claims at the same moment (they compete for devices), now and
            # then the same claim (they compete for the claim).
            order_a = rng.sample(names, len(names))
            order_b = order_a[1:] + order_a[:1] if rng.random() < 0.7 else list(order_a)
            for a, b in zip(order_a, order_b, strict=True):
                await asyncio.gather(first(key(a)), second(key(b)))
                await check_capacity(store)
            if rng.random() < 0.5:
                with contextlib.suppress(NotFound):
                    await store.delete("Node", "", f"n{rng.randrange(nodes)}")
        for name in names:
            await first(key(name))
        await check_capacity(store, settled=True)
        await other.close()
    finally:
        await store.close()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**16), st.integers(3, 10), st.integers(1, 3))
def test_two_schedulers_never_put_more_on_a_device_than_it_has(
    seed: int, claims: int, nodes: int
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        asyncio.run(race(Path(scratch), seed, claims, nodes))
