"""Owner-reference garbage collection (Kubernetes' background cascading deletion).

An object whose ``ownerReferences`` all name objects that no longer exist (by uid: an owner
deleted and re-created under the same name is a different owner) is deleted. Deleting it is an
ordinary store delete, so its own dependents follow on the next event, and finalizers are
respected (an owner that is only marked for deletion still exists).

The collector is a reconcile loop over every kind's informer (it needs leadership):

- an object's DELETED event enqueues its dependents, found through an owner-uid index;
- an object that gains owner references (ADDED, or MODIFIED with new references) is enqueued
  itself, which catches a dependent created after its owner was already gone;
- on start, registering with the informers replays every cached object as ADDED, so every
  object with owners is checked once: orphans left behind by a crash are collected.

The check itself reads the store, not the caches: a cache may not have seen a just-created
owner yet, and deleting a live owner's dependents is the one mistake GC must never make. The
delete carries the resourceVersion that was checked, so a dependent adopted in between is kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from corral.api.errors import NotFound
from corral.api.objects import Object, ObjectKey, object_key
from corral.api.registry import all_kinds, lookup_kind
from corral.controlplane.informer import InformerEvent
from corral.controlplane.loop import ReconcileLoop, Source
from corral.controlplane.manager import Manager
from corral.controlplane.result import Result

logger = logging.getLogger(__name__)

OWNER_UID_INDEX = "ownerUid"
GC_ACTOR = "system:garbage-collector"


class GarbageCollector:
    """A runnable for :meth:`Manager.add`: ``manager.add(GarbageCollector(manager))``."""

    needs_leader_election = True

    def __init__(
        self, manager: Manager, *, kinds: Iterable[str] | None = None, workers: int = 2
    ) -> None:
        names = [info.kind for info in all_kinds()] if kinds is None else list(kinds)
        self._store = manager.store
        self._informers = [manager.informer(kind) for kind in names]
        for informer in self._informers:
            if not informer.has_index(OWNER_UID_INDEX):
                informer.add_index(OWNER_UID_INDEX, _owner_uids)
        self._metrics = manager.metrics
        self._loop = ReconcileLoop(
            "garbage-collector",
            self._collect,
            [Source(informer, self._keys_to_check) for informer in self._informers],
            manager.metrics,
            workers=workers,
        )

    async def start(self, stop: asyncio.Event) -> None:
        await self._loop.start(stop)

    def _keys_to_check(self, event: InformerEvent) -> list[ObjectKey]:
        if event.type == "DELETED":
            uid = _uid(event.object)
            if not uid:
                return []
            return [
                key
                for informer in self._informers
                for key in informer.by_index(OWNER_UID_INDEX, uid)
            ]
        uids = set(_owner_uids(event.object))
        if not uids:
            return []
        if event.old_object is not None and uids <= set(_owner_uids(event.old_object)):
            return []  # references unchanged: checked when they appeared
        return [object_key(event.object)]

    async def _collect(self, key: ObjectKey) -> Result:
        try:
            obj = await self._store.get(key.kind, key.namespace, key.name)
        except NotFound:
            return Result()
        metadata = obj.get("metadata") or {}
        references = metadata.get("ownerReferences") or []
        if not references or metadata.get("deletionTimestamp"):
            return Result()
        for reference in references:
            if await self._owner_exists(reference, key):
                return Result()
        try:
            await self._store.delete(
                key.kind,
                key.namespace,
                key.name,
                actor=GC_ACTOR,
                resource_version=str(metadata.get("resourceVersion") or "") or None,
            )
        except NotFound:
            return Result()
        self._metrics.garbage_collected.labels(key.kind).inc()
        logger.info(
            "deleted an object whose owners are all gone",
            extra={"key": str(key), "owners": [r.get("uid") for r in references]},
        )
        return Result()

    async def _owner_exists(self, reference: dict[str, object], dependent: ObjectKey) -> bool:
        info = lookup_kind(str(reference.get("kind") or ""))
        name = str(reference.get("name") or "")
        if info is None or not name:
            # An owner we cannot resolve is not proof of absence: keep the dependent.
            logger.warning(
                "owner reference cannot be resolved; keeping the dependent",
                extra={"key": str(dependent), "owner": reference},
            )
            return True
        if info.namespaced and not dependent.namespace:
            logger.warning(
                "cluster-scoped object names a namespaced owner; keeping it",
                extra={"key": str(dependent), "owner": reference},
            )
            return True
        namespace = dependent.namespace if info.namespaced else ""
        try:
            owner = await self._store.get(info.kind, namespace, name)
        except NotFound:
            return False
        uid = reference.get("uid")
        return not uid or _uid(owner) == uid


def _owner_uids(obj: Object) -> list[str]:
    references = (obj.get("metadata") or {}).get("ownerReferences") or []
    return [str(r["uid"]) for r in references if isinstance(r, dict) and r.get("uid")]


def _uid(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")
