"""Informers mirror the store: creates, updates and deletes, and a relist after ``Gone``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral.api.errors import BadRequest
from corral.api.objects import ObjectKey, object_key
from corral.controlplane import Informer, InformerEvent
from corral.store import Store, open_store

from .helpers import eventually, model


@contextlib.asynccontextmanager
async def informing(informer: Informer) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(informer.start(stop))
    try:
        await asyncio.wait_for(informer.wait_for_sync(), 10)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def names(events: list[InformerEvent]) -> list[tuple[str, str]]:
    return [(event.type, event.object["metadata"]["name"]) for event in events]


async def test_the_cache_follows_creates_updates_and_deletes(store: Store) -> None:
    await store.create(model("before", labels={"team": "search"}))
    informer = Informer(store, "Model")
    events: list[InformerEvent] = []
    async with informing(informer):
        informer.add_handler(events.append)
        assert names(events) == [("ADDED", "before")], "a new handler hears the cached objects"

        await store.create(model("other", namespace="prod", labels={"team": "ads"}))
        await eventually(lambda: informer.get("prod", "other"), what="the create")
        stored = await store.get("Model", "default", "before")
        stored["metadata"]["labels"] = {"team": "ads"}
        await store.update(stored)
        await eventually(
            lambda: (
                (informer.get("default", "before") or {})["metadata"]["labels"] == {"team": "ads"}
            ),
            what="the update",
        )
        await store.delete("Model", "prod", "other")
        await eventually(lambda: informer.get("prod", "other") is None, what="the delete")

        assert names(events) == [
            ("ADDED", "before"),
            ("ADDED", "other"),
            ("MODIFIED", "before"),
            ("DELETED", "other"),
        ]
        modified = events[2]
        assert modified.old_object is not None
        assert modified.old_object["metadata"]["labels"] == {"team": "search"}
        assert [o["metadata"]["name"] for o in informer.list(selector="team=ads")] == ["before"]
        assert informer.list(namespace="prod") == []
        assert informer.keys() == [ObjectKey("Model", "default", "before")]
        with pytest.raises(BadRequest):
            informer.list(selector="team in (")

        copy = informer.get("default", "before")
        assert copy is not None
        copy["metadata"]["labels"]["team"] = "changed by a careless reader"
        assert (informer.get("default", "before") or {})["metadata"]["labels"] == {"team": "ads"}


async def test_an_index_finds_objects_by_owner_uid(store: Store) -> None:
    informer = Informer(store, "Model")
    informer.add_index(
        "ownerUid", lambda o: [r["uid"] for r in o["metadata"].get("ownerReferences", [])]
    )
    reference = {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Endpoint",
        "name": "chat",
        "uid": "u-1",
    }
    await store.create(model("child", ownerReferences=[reference]))
    async with informing(informer):
        assert informer.by_index("ownerUid", "u-1") == [ObjectKey("Model", "default", "child")]
        await store.delete("Model", "default", "child")
        await eventually(lambda: not informer.by_index("ownerUid", "u-1"), what="unindexing")


async def test_a_watch_that_expired_relists_and_emits_the_differences(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral.controlplane.informer")
    store = await open_store(f"sqlite:///{tmp_path / 'small-log.db'}", event_retention=2)
    try:
        for name in ("kept", "changed", "removed", "recreated"):
            await store.create(model(name))
        informer = Informer(store, "Model")
        events: list[InformerEvent] = []
        async with informing(informer):
            informer.add_handler(events.append)
        events.clear()
        recreated_uid = (await store.get("Model", "default", "recreated"))["metadata"]["uid"]

        # While the informer is stopped, more changes than the event log retains.
        await store.create(model("added"))
        changed = await store.get("Model", "default", "changed")
        changed["spec"] = {"source": "file:///models/changed-v2.gguf"}
        await store.update(changed)
        await store.delete("Model", "default", "removed")
        await store.delete("Model", "default", "recreated")
        await store.create(model("recreated"))
        for filler in range(5):
            await store.create(model(f"filler-{filler}", namespace="elsewhere"))
            await store.delete("Model", "elsewhere", f"filler-{filler}")

        async with informing(informer):
            await eventually(
                lambda: any("relisting" in r.getMessage() for r in caplog.records),
                what="the informer to hit Gone",
            )
            listed = (await store.list("Model")).items
            await eventually(
                lambda: [object_key(o) for o in informer.list()] == [object_key(o) for o in listed],
                what="the cache to equal the store",
            )

        assert sorted(names(events)) == sorted(
            [
                ("ADDED", "added"),
                ("MODIFIED", "changed"),
                ("DELETED", "removed"),
                ("DELETED", "recreated"),
                ("ADDED", "recreated"),
            ]
        )
        deleted_recreated = next(
            e for e in events if e.type == "DELETED" and e.object["metadata"]["name"] == "recreated"
        )
        assert deleted_recreated.object["metadata"]["uid"] == recreated_uid
        new_changed = informer.get("default", "changed")
        assert new_changed is not None
        assert new_changed["spec"]["source"].endswith("changed-v2.gguf")
    finally:
        await store.close()
