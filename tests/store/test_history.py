"""Every spec change is recorded (who, when, what, the diff), and kept after deletion."""

from __future__ import annotations

from typing import Any

from corral.store import Store


async def test_history_records_each_generation_with_actor_and_diff(store: Store, make: Any):
    created = await store.create(make("chat", replicas=1, model="a"), actor="alice")
    updated = await store.update(
        {**created, "spec": {"replicas": 3, "model": "a", "routing": "least-load"}}, actor="bob"
    )
    await store.update({**updated, "spec": {"replicas": 3}}, actor="carol")
    history = await store.history("Endpoint", "default", "chat")
    assert [(h.generation, h.action, h.actor) for h in history] == [
        (1, "created", "alice"),
        (2, "updated", "bob"),
        (3, "updated", "carol"),
    ]
    assert history[0].spec == {"replicas": 1, "model": "a"}
    assert history[0].diff == [{"op": "add", "path": "/spec", "value": history[0].spec}]
    assert sorted(history[1].diff, key=lambda op: op["path"]) == [
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/spec/routing", "value": "least-load"},
    ]
    assert sorted(history[2].diff, key=lambda op: op["path"]) == [
        {"op": "remove", "path": "/spec/model"},
        {"op": "remove", "path": "/spec/routing"},
    ]
    versions = [h.resource_version for h in history]
    assert versions == sorted(versions)
    assert all(h.timestamp.endswith("Z") for h in history)


async def test_metadata_and_status_changes_are_not_spec_history(store: Store, make: Any):
    created = await store.create(make("chat", labels={"team": "a"}))
    relabelled = await store.update(
        {**created, "metadata": {**created["metadata"], "labels": {"team": "b"}}}
    )
    await store.update_status({**relabelled, "status": {"phase": "Ready"}})
    history = await store.history("Endpoint", "default", "chat")
    assert [h.action for h in history] == ["created"]
    assert history[0].labels == {"team": "a"}


async def test_history_is_kept_after_deletion_and_continues_on_recreate(store: Store, make: Any):
    created = await store.create(make("chat"), actor="alice")
    await store.update({**created, "spec": {"replicas": 2}}, actor="alice")
    await store.delete("Endpoint", "default", "chat", actor="dave")
    history = await store.history("Endpoint", "default", "chat")
    assert [(h.action, h.actor) for h in history] == [
        ("created", "alice"),
        ("updated", "alice"),
        ("deleted", "dave"),
    ]
    assert history[-1].spec == {"replicas": 2}
    await store.create(make("chat", replicas=7), actor="erin")
    again = await store.history("Endpoint", "default", "chat")
    assert [h.action for h in again] == ["created", "updated", "deleted", "created"]
    assert again[-1].spec == {"replicas": 7}


async def test_history_of_unknown_object_is_empty(store: Store):
    assert await store.history("Endpoint", "default", "never") == []


async def test_history_is_per_object(store: Store, make: Any):
    await store.create(make("a"))
    await store.create(make("a", namespace="prod"))
    await store.create(make("b"))
    assert len(await store.history("Endpoint", "default", "a")) == 1
    assert len(await store.history("Endpoint", "prod", "a")) == 1


async def test_lease_renewals_do_not_grow_the_history(store: Store):
    lease = {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Lease",
        "metadata": {"name": "leader", "namespace": "corral-system"},
        "spec": {"holderIdentity": "a", "renewTime": "t0"},
    }
    current = await store.create(lease)
    for tick in range(1, 4):
        current["spec"]["renewTime"] = f"t{tick}"
        current = await store.update(current)
    assert current["metadata"]["generation"] == 4
    entries = await store.history("Lease", "corral-system", "leader")
    assert [entry.action for entry in entries] == ["created"]
