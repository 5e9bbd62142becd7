"""Create, read, update and optimistic concurrency: no write is ever lost, on either backend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral.api.errors import AlreadyExists, Conflict, NotFound
from corral.store import Store


async def test_create_fills_server_metadata_and_ignores_client_values(store: Store, make: Any):
    obj = make("chat")
    obj["metadata"].update(
        uid="client-uid", generation=7, resourceVersion="", creationTimestamp="yesterday"
    )
    obj["status"] = {"observedGeneration": 3}
    created = await store.create(obj, actor="alice")
    meta = created["metadata"]
    assert meta["uid"] != "client-uid"
    assert len(meta["uid"]) == 36
    assert meta["generation"] == 1
    assert meta["resourceVersion"] == str(await store.current_resource_version())
    assert meta["creationTimestamp"].endswith("Z")
    assert meta["creationTimestamp"] != "yesterday"
    assert "status" not in created  # status belongs to controllers (update_status)
    assert await store.get("Endpoint", "default", "chat") == created


async def test_create_twice_is_already_exists(store: Store, make: Any):
    await store.create(make("chat"))
    with pytest.raises(AlreadyExists, match="Endpoint/default/chat"):
        await store.create(make("chat"))


async def test_same_name_in_other_namespace_or_kind_is_another_object(store: Store, make: Any):
    await store.create(make("chat"))
    await store.create(make("chat", namespace="prod"))
    lease = {"kind": "Lease", "metadata": {"name": "chat", "namespace": "default"}, "spec": {}}
    await store.create(lease)
    assert (await store.get("Lease", "default", "chat"))["kind"] == "Lease"


async def test_get_missing_is_not_found(store: Store):
    with pytest.raises(NotFound, match="Endpoint/default/nope"):
        await store.get("Endpoint", "default", "nope")


async def test_returned_objects_are_the_callers_to_mutate(store: Store, make: Any):
    obj = make("chat")
    created = await store.create(obj)
    obj["spec"]["replicas"] = 99
    created["spec"]["replicas"] = 98
    fetched = await store.get("Endpoint", "default", "chat")
    assert fetched["spec"] == {"replicas": 1}


async def test_update_bumps_generation_only_when_spec_changes(store: Store, make: Any):
    created = await store.create(make("chat"))
    relabelled = await store.update(
        {**created, "metadata": {**created["metadata"], "labels": {"a": "b"}}}
    )
    assert relabelled["metadata"]["generation"] == 1
    assert int(relabelled["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )
    respecced = await store.update({**relabelled, "spec": {"replicas": 2}})
    assert respecced["metadata"]["generation"] == 2
    assert respecced["metadata"]["uid"] == created["metadata"]["uid"]
    assert respecced["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]


async def test_update_keeps_status_and_takes_user_metadata_from_input(store: Store, make: Any):
    created = await store.create(make("chat", finalizers=["corral.dev/cleanup"], labels={"a": "1"}))
    with_status = await store.update_status({**created, "status": {"phase": "Ready"}})
    changed = dict(with_status)
    changed["metadata"] = {
        **with_status["metadata"],
        "labels": {"b": "2"},
        "annotations": {"note": "x"},
        "finalizers": [],
        "uid": "forged",
        "generation": 40,
    }
    changed["status"] = {"phase": "Forged"}
    updated = await store.update(changed)
    assert updated["status"] == {"phase": "Ready"}
    assert updated["metadata"]["labels"] == {"b": "2"}
    assert updated["metadata"]["annotations"] == {"note": "x"}
    assert updated["metadata"]["finalizers"] == []
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["generation"] == 1


async def test_update_status_changes_status_only(store: Store, make: Any):
    created = await store.create(make("chat"))
    attempt = {**created, "spec": {"replicas": 5}, "status": {"observedGeneration": 1}}
    updated = await store.update_status(attempt)
    assert updated["status"] == {"observedGeneration": 1}
    assert updated["spec"] == {"replicas": 1}
    assert updated["metadata"]["generation"] == 1


async def test_update_that_changes_nothing_writes_nothing(store: Store, make: Any):
    created = await store.create(make("chat"))
    before = await store.current_resource_version()
    again = await store.update(created)
    same_status = await store.update_status({**created, "status": {}})
    assert again == created
    assert await store.update_status(same_status) == same_status
    assert await store.current_resource_version() == before + 1  # only the status write


async def test_update_of_missing_object_is_not_found(store: Store, make: Any):
    with pytest.raises(NotFound):
        await store.update(make("ghost"))
    with pytest.raises(NotFound):
        await store.update_status(make("ghost"))


async def test_stale_resource_version_is_conflict(store: Store, make: Any):
    created = await store.create(make("chat"))
    await store.update({**created, "spec": {"replicas": 2}})
    with pytest.raises(Conflict, match="stale"):
        await store.update({**created, "spec": {"replicas": 3}})
    with pytest.raises(Conflict):
        await store.update_status({**created, "status": {"x": 1}})
    assert (await store.get("Endpoint", "default", "chat"))["spec"] == {"replicas": 2}


async def test_update_without_resource_version_is_unconditional(store: Store, make: Any):
    await store.create(make("chat"))
    await store.update(make("chat", replicas=4))
    assert (await store.get("Endpoint", "default", "chat"))["spec"] == {"replicas": 4}


async def test_two_writers_with_the_same_version_exactly_one_wins(target: Any, make: Any):
    first, second = await target.open(), await target.open()
    created = await first.create(make("lease"))
    results = await asyncio.gather(
        first.update({**created, "spec": {"holder": "a"}}),
        second.update({**created, "spec": {"holder": "b"}}),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, dict)]
    losers = [r for r in results if isinstance(r, Conflict)]
    assert len(winners) == 1, results
    assert len(losers) == 1, results
    stored = await first.get("Endpoint", "default", "lease")
    assert stored["spec"] == winners[0]["spec"]


async def test_concurrent_read_modify_write_loses_no_update(target: Any, make: Any):
    stores = [await target.open() for _ in range(2)]
    await stores[0].create(make("counter", count=0))

    async def increment(store: Store, times: int) -> int:
        conflicts = 0
        for _ in range(times):
            while True:
                current = await store.get("Endpoint", "default", "counter")
                current["spec"]["count"] += 1
                try:
                    await store.update(current)
                    break
                except Conflict:
                    conflicts += 1
        return conflicts

    await asyncio.gather(*(increment(stores[i % 2], 10) for i in range(4)))
    final = await stores[1].get("Endpoint", "default", "counter")
    assert final["spec"]["count"] == 40
    assert final["metadata"]["generation"] == 41


async def test_concurrent_creates_of_one_name_yield_one_object(target: Any, make: Any):
    stores = [await target.open() for _ in range(2)]
    results = await asyncio.gather(
        *(stores[i % 2].create(make("leader", holder=str(i))) for i in range(6)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, dict) for r in results) == 1
    assert sum(isinstance(r, AlreadyExists) for r in results) == 5


async def test_resource_versions_are_one_global_sequence(store: Store, make: Any):
    versions = []
    for name in ("a", "b", "c"):
        versions.append(int((await store.create(make(name)))["metadata"]["resourceVersion"]))
    lease = await store.create({"kind": "Lease", "metadata": {"name": "l"}, "spec": {}})
    versions.append(int(lease["metadata"]["resourceVersion"]))
    assert versions == list(range(versions[0], versions[0] + 4))
    assert "namespace" not in lease["metadata"]  # cluster-scoped: namespace ""
    assert await store.get("Lease", "", "l") == lease
