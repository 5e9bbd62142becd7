"""Declarative apply: create/configure/unchanged/prune outcomes, all or nothing, dry-run writes
nothing."""

from __future__ import annotations

from typing import Any

import pytest

from corral.api.errors import BadRequest, Conflict, Invalid, NotFound
from corral.store import Store


async def snapshot(store: Store) -> tuple[int, list[Any]]:
    """Everything a failed or dry-run apply must leave untouched."""
    listed = await store.list("Endpoint")
    return await store.current_resource_version(), listed.items


async def test_apply_creates_configures_and_leaves_unchanged(store: Store, make: Any):
    first = await store.apply([make("a"), make("b")], actor="ci")
    assert [(o.name, o.action) for o in first] == [("a", "created"), ("b", "created")]
    assert first[0].diff == [{"op": "add", "path": "/spec", "value": {"replicas": 1}}]
    assert first[0].object == await store.get("Endpoint", "default", "a")

    second = await store.apply([make("a"), make("b", replicas=3)], actor="ci")
    assert [(o.name, o.action) for o in second] == [("a", "unchanged"), ("b", "configured")]
    assert second[0].diff == []
    assert second[1].diff == [{"op": "replace", "path": "/spec/replicas", "value": 3}]
    assert second[1].object["metadata"]["generation"] == 2
    assert (await store.history("Endpoint", "default", "b"))[-1].actor == "ci"


async def test_apply_replaces_declared_fields_and_keeps_the_rest(store: Store, make: Any):
    created = await store.create(make("a", labels={"old": "1"}, finalizers=["keep.corral.dev"]))
    await store.update_status({**created, "status": {"phase": "Ready"}})
    declared = make("a", replicas=2, labels={"new": "1"})
    declared["metadata"]["annotations"] = {"note": "hi"}
    (outcome,) = await store.apply([declared])
    assert outcome.action == "configured"
    stored = await store.get("Endpoint", "default", "a")
    assert stored["metadata"]["labels"] == {"new": "1"}
    assert stored["metadata"]["annotations"] == {"note": "hi"}
    assert stored["metadata"]["finalizers"] == ["keep.corral.dev"]
    assert stored["status"] == {"phase": "Ready"}
    assert stored["spec"] == {"replicas": 2}
    assert {op["path"] for op in outcome.diff} == {
        "/metadata/labels/old",
        "/metadata/labels/new",
        "/metadata/annotations",
        "/spec/replicas",
    }


async def test_label_only_apply_is_configured_without_new_generation(store: Store, make: Any):
    await store.apply([make("a")])
    (outcome,) = await store.apply([make("a", labels={"team": "x"})])
    assert outcome.action == "configured"
    assert outcome.object["metadata"]["generation"] == 1


async def test_apply_is_all_or_nothing_on_a_conflict(store: Store, make: Any):
    existing = await store.create(make("b"))
    await store.update(make("b", replicas=5))
    before = await snapshot(store)
    stale = make("b", replicas=9)
    stale["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
    with pytest.raises(Conflict, match=r"objects\[1\]"):
        await store.apply([make("a"), stale, make("c")])
    assert await snapshot(store) == before
    with pytest.raises(NotFound):
        await store.get("Endpoint", "default", "a")


async def test_apply_is_all_or_nothing_on_an_oversized_object(store: Store, make: Any):
    await store.create(make("b"))
    before = await snapshot(store)
    huge = make("huge", blob="x" * (1024 * 1024))
    with pytest.raises(Invalid, match=r"objects\[2\].*1 MiB"):
        await store.apply([make("a"), make("b", replicas=4), huge])
    assert await snapshot(store) == before
    assert await store.history("Endpoint", "default", "a") == []


async def test_dry_run_reports_outcomes_and_writes_nothing(store: Store, make: Any):
    await store.create(make("b", labels={"app": "x"}))
    await store.create(make("gone", labels={"app": "x"}))
    before = await snapshot(store)
    outcomes = await store.apply(
        [make("a", labels={"app": "x"}), make("b", replicas=2, labels={"app": "x"})],
        dry_run=True,
        prune_selector="app=x",
    )
    assert [(o.name, o.action) for o in outcomes] == [
        ("a", "created"),
        ("b", "configured"),
        ("gone", "pruned"),
    ]
    assert outcomes[1].diff == [{"op": "replace", "path": "/spec/replicas", "value": 2}]
    assert await snapshot(store) == before
    assert len(await store.history("Endpoint", "default", "b")) == 1


async def test_prune_deletes_matching_objects_that_are_no_longer_declared(store: Store, make: Any):
    await store.apply([make(n, labels={"app": "shop"}) for n in ("a", "b", "c")])
    await store.create(make("unrelated", labels={"app": "other"}))
    await store.create(make("elsewhere", namespace="prod", labels={"app": "shop"}))
    lease = {"kind": "Lease", "metadata": {"name": "l", "labels": {"app": "shop"}}, "spec": {}}
    await store.create(lease)
    outcomes = await store.apply(
        [make("a", labels={"app": "shop"})], prune_selector="app=shop", actor="ci"
    )
    assert sorted((o.namespace, o.name, o.action) for o in outcomes) == [
        ("default", "a", "unchanged"),
        ("default", "b", "pruned"),
        ("default", "c", "pruned"),
        ("prod", "elsewhere", "pruned"),
    ]
    remaining = [o["metadata"]["name"] for o in (await store.list("Endpoint")).items]
    assert remaining == ["a", "unrelated"]
    await store.get("Lease", "", "l")  # only the declared kinds are pruned by default
    assert (await store.history("Endpoint", "default", "b"))[-1].actor == "ci"


async def test_prune_kinds_and_finalizers_are_respected(store: Store, make: Any):
    await store.create(make("guarded", labels={"app": "shop"}, finalizers=["x.corral.dev"]))
    lease = {"kind": "Lease", "metadata": {"name": "l", "labels": {"app": "shop"}}, "spec": {}}
    await store.create(lease)
    outcomes = await store.apply(
        [make("a", labels={"app": "shop"})],
        prune_selector="app=shop",
        prune_kinds=["Endpoint", "Lease"],
    )
    assert sorted((o.kind, o.name, o.action) for o in outcomes) == [
        ("Endpoint", "a", "created"),
        ("Endpoint", "guarded", "pruned"),
        ("Lease", "l", "pruned"),
    ]
    guarded = await store.get("Endpoint", "default", "guarded")
    assert "deletionTimestamp" in guarded["metadata"]
    again = await store.apply([make("a", labels={"app": "shop"})], prune_selector="app=shop")
    assert [o.action for o in again] == ["unchanged"]  # already being deleted: nothing to do


async def test_apply_rejects_duplicates_and_an_empty_prune_selector(store: Store, make: Any):
    with pytest.raises(BadRequest, match=r"objects\[1\].*declared twice"):
        await store.apply([make("a"), make("a", replicas=2)])
    with pytest.raises(BadRequest, match="prune_selector is empty"):
        await store.apply([make("a")], prune_selector="")
    with pytest.raises(BadRequest, match="position"):
        await store.apply([make("a")], prune_selector="app in")
    assert await store.current_resource_version() == 0


async def test_apply_rejects_objects_without_kind_or_name(store: Store, make: Any):
    nameless = make("x")
    del nameless["metadata"]["name"]
    with pytest.raises(Invalid) as caught:
        await store.apply([make("a"), nameless])
    assert caught.value.causes[0].path == "metadata.name"
    assert caught.value.causes[0].location == "objects[1]"
    assert await store.current_resource_version() == 0
