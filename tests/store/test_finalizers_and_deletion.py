"""Deletion respects finalizers: mark first, remove when the last finalizer goes."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from corral.api.errors import Conflict, Invalid, NotFound
from corral.store import Store


async def test_delete_without_finalizers_removes_the_object(store: Store, make: Any, events: Any):
    created = await store.create(make("chat"))
    start = int(created["metadata"]["resourceVersion"])
    deleted = await store.delete("Endpoint", "default", "chat", actor="bob")
    assert deleted["metadata"]["uid"] == created["metadata"]["uid"]
    with pytest.raises(NotFound):
        await store.get("Endpoint", "default", "chat")
    async with contextlib.aclosing(store.watch("Endpoint", resource_version=start)) as watch:
        (event,) = await events(watch, 1)
    assert event.type == "DELETED"
    assert event.resource_version == start + 1


async def test_delete_with_finalizers_only_marks_until_the_last_one_is_removed(
    store: Store, make: Any, events: Any
):
    created = await store.create(make("chat", finalizers=["a.corral.dev", "b.corral.dev"]))
    start = int(created["metadata"]["resourceVersion"])
    marked = await store.delete("Endpoint", "default", "chat")
    assert marked["metadata"]["deletionTimestamp"].endswith("Z")
    stored = await store.get("Endpoint", "default", "chat")
    assert stored == marked
    # Deleting again changes nothing: same object, no new version.
    assert await store.delete("Endpoint", "default", "chat") == marked
    assert await store.current_resource_version() == start + 1

    one_left = await store.update(
        {**stored, "metadata": {**stored["metadata"], "finalizers": ["b.corral.dev"]}}
    )
    assert one_left["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
    assert (await store.get("Endpoint", "default", "chat"))["metadata"]["finalizers"] == [
        "b.corral.dev"
    ]
    await store.update({**one_left, "metadata": {**one_left["metadata"], "finalizers": []}})
    with pytest.raises(NotFound):
        await store.get("Endpoint", "default", "chat")

    async with contextlib.aclosing(store.watch("Endpoint", resource_version=start)) as watch:
        seen = await events(watch, 3)
    assert [e.type for e in seen] == ["MODIFIED", "MODIFIED", "DELETED"]
    assert "deletionTimestamp" in seen[0].object["metadata"]


async def test_no_new_finalizers_while_deleting(store: Store, make: Any):
    await store.create(make("chat", finalizers=["a.corral.dev"]))
    marked = await store.delete("Endpoint", "default", "chat")
    attempt = {**marked, "metadata": {**marked["metadata"], "finalizers": ["a.corral.dev", "x"]}}
    with pytest.raises(Invalid, match="no new finalizers"):
        await store.update(attempt)


async def test_status_and_spec_still_writable_while_deleting(store: Store, make: Any):
    await store.create(make("chat", finalizers=["a.corral.dev"]))
    marked = await store.delete("Endpoint", "default", "chat")
    updated = await store.update_status({**marked, "status": {"phase": "Terminating"}})
    assert updated["status"] == {"phase": "Terminating"}
    assert "deletionTimestamp" in updated["metadata"]


async def test_delete_with_stale_resource_version_is_conflict(store: Store, make: Any):
    created = await store.create(make("chat"))
    await store.update(make("chat", replicas=2))
    with pytest.raises(Conflict):
        await store.delete(
            "Endpoint", "default", "chat", resource_version=created["metadata"]["resourceVersion"]
        )
    current = await store.get("Endpoint", "default", "chat")
    await store.delete(
        "Endpoint", "default", "chat", resource_version=current["metadata"]["resourceVersion"]
    )


async def test_delete_missing_is_not_found(store: Store):
    with pytest.raises(NotFound, match="Endpoint/default/ghost"):
        await store.delete("Endpoint", "default", "ghost")


async def test_name_is_reusable_after_deletion_with_a_new_uid(store: Store, make: Any):
    first = await store.create(make("chat"))
    await store.delete("Endpoint", "default", "chat")
    second = await store.create(make("chat"))
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    assert second["metadata"]["generation"] == 1
