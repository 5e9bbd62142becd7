"""The claim scheduler as the Manager runs it: informer caches, events waking claims, real CEL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import corral.api.kinds.deviceclass
import corral.api.kinds.devicequota
import corral.api.kinds.node
import corral.api.kinds.resourceclaim  # noqa: F401  (registers the device kinds)
from corral.api.validation import validate_object
from corral.controllers.resourceclaim import LEDGER, resourceclaim_controller
from corral.controlplane import Manager, get_condition
from corral.devices.cel_cache import device_predicate
from corral.store import open_store
from corral.store.protocol import Store
from device_fleet import IS_H100, claim, gpu_class, gpu_node, quota


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(f"sqlite:///{tmp_path / 'corral.db'}")
    manager = Manager(store, identity="test", registry=CollectorRegistry())
    manager.add(resourceclaim_controller(manager, device_predicate))
    stop = asyncio.Event()
    running = asyncio.create_task(manager.run(stop))
    try:
        yield store
    finally:
        stop.set()
        await running
        await store.close()


async def apply(store: Store, *docs: dict[str, Any]) -> None:
    await store.apply([validate_object({"apiVersion": "corral.dev/v1alpha1", **d}) for d in docs])


async def wait_for(
    store: Store, name: str, check: Callable[[dict[str, Any]], bool], within: float = 20.0
) -> dict[str, Any]:
    last: dict[str, Any] = {}
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        last = (await store.get("ResourceClaim", "default", name)).get("status") or {}
        if check(last):
            return last
        await asyncio.sleep(0.05)
    pytest.fail(f"claim {name} did not converge; last status: {last}")


def condition(kind: str, reason: str) -> Callable[[dict[str, Any]], bool]:
    def check(status: dict[str, Any]) -> bool:
        found = get_condition(status, kind)
        return found is not None and found.get("reason") == reason

    return check


async def test_claims_are_bound_when_a_node_arrives_and_preempted_by_priority(
    store: Store,
) -> None:
    await apply(store, gpu_class(), gpu_class("h100", IS_H100), claim("early", count=2))
    await wait_for(store, "early", condition("Unschedulable", "NoNodeCanEverFit"))
    await apply(store, gpu_node("h1", 2, model="H100"))
    bound = await wait_for(store, "early", lambda s: "allocation" in s)
    assert bound["allocation"]["nodeName"] == "h1"
    await apply(store, claim("urgent", count=2, priority=10, device_class="h100"))
    urgent = await wait_for(store, "urgent", condition("Allocated", "AllocatedAfterPreemption"))
    assert urgent["allocation"]["nodeName"] == "h1"
    early = await wait_for(store, "early", condition("Preempted", "PreemptedByHigherPriority"))
    assert "default/urgent" in get_condition(early, "Preempted")["message"]  # type: ignore[index]
    node = await store.get("Node", "", "h1")
    assert list(node["status"][LEDGER]) == ["default/urgent"]


async def test_quota_holds_a_claim_until_its_team_frees_devices(store: Store) -> None:
    await apply(
        store,
        gpu_class(),
        gpu_node("n0", 4),
        quota("team-a", 2),
        claim("a1", count=2, queue="team-a"),
        claim("a2", count=1, queue="team-a"),
    )
    await wait_for(store, "a1", lambda s: "allocation" in s)
    waiting = await wait_for(store, "a2", condition("Allocated", "QuotaExceeded"))
    assert "team-a" in get_condition(waiting, "Allocated")["message"]  # type: ignore[index]
    await store.delete("ResourceClaim", "default", "a1")
    await wait_for(store, "a2", lambda s: "allocation" in s)
