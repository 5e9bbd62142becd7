"""Owner-reference GC: dependents whose owners are all gone are deleted, level by level."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from corral.api.errors import NotFound
from corral.api.objects import API_VERSION, Object
from corral.controlplane import GarbageCollector, Manager
from corral.store import Store

from .helpers import eventually, model, owned_by, running, sample


def endpoint(name: str, **metadata: Any) -> Object:
    return {
        "apiVersion": API_VERSION,
        "kind": "Endpoint",
        "metadata": {"name": name, "namespace": "default", **metadata},
        "spec": {},
    }


async def exists(store: Store, kind: str, name: str, namespace: str = "default") -> bool:
    try:
        await store.get(kind, namespace, name)
    except NotFound:
        return False
    return True


def collecting(store: Store, registry: CollectorRegistry) -> Manager:
    manager = Manager(store, identity="test", registry=registry)
    manager.add(GarbageCollector(manager))
    return manager


async def test_deleting_an_owner_cascades_two_levels(
    store: Store, registry: CollectorRegistry
) -> None:
    chat = await store.create(endpoint("chat"))
    weights = await store.create(model("weights", ownerReferences=owned_by(chat)))
    await store.create(model("shard", ownerReferences=owned_by(weights, controller=False)))
    await store.create(model("unrelated"))

    async with running(manager := collecting(store, registry)):
        await eventually(lambda: manager.ready, what="the manager to be ready")
        await store.delete("Endpoint", "default", "chat")

        async def both_gone() -> bool:
            return not await exists(store, "Model", "weights") and not await exists(
                store, "Model", "shard"
            )

        await eventually(both_gone, what="both levels of dependents to be collected")
    assert await exists(store, "Model", "unrelated")
    assert sample(registry, "corral_garbage_collected_objects_total", kind="Model") == 2
    history = await store.history("Model", "default", "shard")
    assert history[-1].action == "deleted"
    assert history[-1].actor == "system:garbage-collector"


async def test_orphans_left_while_no_collector_ran_are_collected_at_start(
    store: Store, registry: CollectorRegistry
) -> None:
    chat = await store.create(endpoint("chat"))
    await store.create(model("orphan", ownerReferences=owned_by(chat)))
    await store.delete("Endpoint", "default", "chat")
    replacement = await store.create(endpoint("chat"))  # same name, new uid: not the owner
    await store.create(model("adopted", ownerReferences=owned_by(replacement)))

    async with running(manager := collecting(store, registry)):
        await eventually(lambda: manager.ready, what="the manager to be ready")

        async def orphan_gone() -> bool:
            return not await exists(store, "Model", "orphan")

        await eventually(orphan_gone, what="the orphan to be collected")
    assert await exists(store, "Model", "adopted")


async def test_one_live_owner_keeps_a_dependent_and_finalizers_hold_the_cascade(
    store: Store, registry: CollectorRegistry
) -> None:
    first = await store.create(endpoint("first"))
    second = await store.create(endpoint("second", finalizers=["corral.dev/drain"]))
    shared_refs = owned_by(first, controller=False) + owned_by(second, controller=False)
    await store.create(model("shared", ownerReferences=shared_refs))
    await store.create(model("held", ownerReferences=owned_by(second)))

    def checks() -> float:
        return sample(
            registry,
            "corral_controller_reconcile_total",
            controller="garbage-collector",
            result="success",
        )

    async with running(collecting(store, registry)):
        await eventually(lambda: checks() == 2, what="the start-up scan of both dependents")
        await store.delete("Endpoint", "default", "first")
        await store.delete("Endpoint", "default", "second")  # only marked: it has a finalizer
        await eventually(lambda: checks() == 3, what="the check of the first owner's dependent")
        assert await exists(store, "Model", "shared")
        assert await exists(store, "Model", "held")

        marked = await store.get("Endpoint", "default", "second")
        marked["metadata"]["finalizers"] = []
        await store.update(marked)

        async def cascade_done() -> bool:
            gone = not await exists(store, "Model", "shared")
            return gone and not await exists(store, "Model", "held")

        await eventually(cascade_done, what="the last owner's removal to cascade")
