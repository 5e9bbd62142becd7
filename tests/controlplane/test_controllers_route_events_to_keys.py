"""Which events wake which keys: ``for_kind``, ``owns`` (via the controller owner), ``watches``."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from corral.api.objects import API_VERSION, Object, ObjectKey
from corral.controlplane import Controller, KeyChannel, Manager, Result, Watch
from corral.store import Store

from .helpers import eventually, model, owned_by, running

CHAT = ObjectKey("Endpoint", "default", "chat")


def endpoint(name: str, secret: str) -> Object:
    return {
        "apiVersion": API_VERSION,
        "kind": "Endpoint",
        "metadata": {"name": name, "namespace": "default", "annotations": {"secret": secret}},
        "spec": {},
    }


async def test_owned_and_watched_changes_reconcile_the_owner(
    store: Store, registry: CollectorRegistry
) -> None:
    woken: list[ObjectKey] = []

    async def reconcile(key: ObjectKey) -> Result:
        woken.append(key)
        return Result()

    chat = await store.create(endpoint("chat", secret="key"))
    await store.create(endpoint("search", secret="other-key"))
    manager = Manager(store, identity="test", registry=registry)
    endpoints = manager.informer("Endpoint")

    def endpoints_using(secret: Object) -> list[ObjectKey]:
        """Read the shared cache to find every Endpoint that names this Secret."""
        namespace = secret["metadata"]["namespace"]
        return [
            ObjectKey("Endpoint", namespace, e["metadata"]["name"])
            for e in endpoints.list(namespace=namespace)
            if e["metadata"]["annotations"]["secret"] == secret["metadata"]["name"]
        ]

    manager.add(
        Controller(
            "endpoints",
            for_kind="endpoints",  # plural and short names resolve to the kind
            reconciler=reconcile,
            owns=("Model",),
            watches=(Watch("Secret", endpoints_using),),
        )
    )
    async with running(manager):
        await eventually(lambda: len(woken) == 2, what="both endpoints reconciled at start")
        woken.clear()

        await store.create(model("child", ownerReferences=owned_by(chat)))
        await eventually(lambda: woken == [CHAT], what="the owner woken by its child")
        woken.clear()

        await store.create(model("bystander", ownerReferences=owned_by(chat, controller=False)))
        await store.create(
            {
                "apiVersion": API_VERSION,
                "kind": "Secret",
                "metadata": {"name": "key", "namespace": "default"},
                "spec": {},
            }
        )
        await eventually(lambda: woken == [CHAT], what="the Watch mapping to wake the endpoint")
        await asyncio.sleep(0.1)
        assert woken == [CHAT], "a non-controller owner reference wakes nobody"


def test_definitions_are_checked_when_declared() -> None:
    async def reconcile(_key: ObjectKey) -> Result:
        return Result()

    with pytest.raises(ValueError, match="unknown kind 'Gadget'"):
        Controller("gadgets", for_kind="Gadget", reconciler=reconcile)
    with pytest.raises(ValueError, match="owns: unknown kind 'Nope'"):
        Controller("models", for_kind="Model", reconciler=reconcile, owns=("Nope",))
    with pytest.raises(ValueError, match="DNS-1123"):
        Controller("Models!", for_kind="Model", reconciler=reconcile)
    with pytest.raises(ValueError, match="max_concurrent_reconciles"):
        Controller("models", for_kind="Model", reconciler=reconcile, max_concurrent_reconciles=0)
    with pytest.raises(TypeError, match="reconciler"):
        Controller("models", for_kind="Model", reconciler="reconcile")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown kind"):
        Watch("Gadget", lambda _obj: [])
    controller = Controller("models", for_kind="mdl", reconciler=reconcile, owns="Secret")  # type: ignore[arg-type]
    assert (controller.for_kind, controller.owns) == ("Model", ("Secret",))


async def test_keys_sent_on_a_channel_are_reconciled_and_on_stop_runs_at_shutdown(
    store: Store, registry: CollectorRegistry
) -> None:
    woken: list[ObjectKey] = []
    stopped: list[int] = []

    async def reconcile(key: ObjectKey) -> Result:
        woken.append(key)
        return Result()

    async def release_replicas() -> None:
        stopped.append(len(woken))

    replica_changes = KeyChannel()
    replica_changes.send(CHAT)  # nobody listens yet: dropped, the start-up pass covers it
    manager = Manager(store, identity="test", registry=registry)
    manager.add(
        Controller(
            "endpoints",
            for_kind="Endpoint",
            reconciler=reconcile,
            channels=(replica_changes,),
            on_stop=release_replicas,
        )
    )
    async with running(manager):
        await eventually(lambda: manager.ready, what="the manager to be ready")
        assert woken == []
        replica_changes.send(CHAT)
        await eventually(lambda: woken == [CHAT], what="the key sent on the channel")
        other = ObjectKey("Endpoint", "default", "other")
        await asyncio.to_thread(replica_changes.send, other)
        await eventually(lambda: woken == [CHAT, other], what="a key sent from another thread")
        assert stopped == []
    assert stopped == [2]
    with pytest.raises(TypeError, match="ObjectKey"):
        replica_changes.send(("Endpoint", "default", "chat"))  # type: ignore[arg-type]
