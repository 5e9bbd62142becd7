"""Where the claim scheduler reads the world from: the store directly, or the Manager's caches.

:class:`~corral.controllers.resourceclaim.ClaimReconciler` asks a source, per kind, for the
objects that changed since it last asked (name → object, None when deleted). Keys are
``namespace/name`` for ResourceClaims and the name for cluster-scoped kinds.

- :class:`StoreSource` lists the kind from the store and compares resourceVersions: simple and
  exact, O(objects) per call; for tests and small fleets.
- :class:`InformerSource` reads the Manager's shared informers: a full list once, then only the
  objects whose events arrived since. The cache may lag the store by a moment; that never
  breaks a bind (binds are checked against the Node ledger as just read from the store), it
  only costs a retry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from corral.api.objects import Object
from corral.controlplane.informer import EventHandler, Informer, InformerEvent
from corral.store.protocol import Store

CLAIM_KIND = "ResourceClaim"


class ObjectSource(Protocol):
    async def changed(self, kind: str) -> dict[str, Object | None]: ...

    def forget(self, kind: str, name: str) -> None: ...


def object_name(kind: str, obj: Object) -> str:
    meta = obj["metadata"]
    if kind == CLAIM_KIND:
        return f"{meta.get('namespace', '')}/{meta['name']}"
    return str(meta["name"])


class StoreSource:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._seen: dict[tuple[str, str], str] = {}

    async def changed(self, kind: str) -> dict[str, Object | None]:
        listed = (await self._store.list(kind)).items
        return _diff(self._seen, kind, listed)

    def forget(self, kind: str, name: str) -> None:
        """Make the next call report ``name`` again (after reading it some other way)."""
        self._seen.pop((kind, name), None)


class InformerSource:
    def __init__(self, informers: Mapping[str, Informer]) -> None:
        self._informers = dict(informers)
        self._listed: set[str] = set()
        self._dirty: dict[str, set[str]] = {kind: set() for kind in informers}
        for kind, informer in informers.items():
            informer.add_handler(self._marker(kind))

    def _marker(self, kind: str) -> EventHandler:
        def mark(event: InformerEvent) -> None:
            self._dirty[kind].add(object_name(kind, event.object))

        return mark

    async def changed(self, kind: str) -> dict[str, Object | None]:
        informer = self._informers[kind]
        if kind not in self._listed:
            self._listed.add(kind)
            self._dirty[kind].clear()
            return {object_name(kind, obj): obj for obj in informer.list()}
        names, self._dirty[kind] = self._dirty[kind], set()
        return {name: _get(informer, kind, name) for name in names}

    def forget(self, kind: str, name: str) -> None:
        self._dirty.setdefault(kind, set()).add(name)


def _get(informer: Informer, kind: str, name: str) -> Object | None:
    namespace, _, short = name.partition("/") if kind == CLAIM_KIND else ("", "", name)
    return informer.get(namespace, short)


def _diff(
    seen: dict[tuple[str, str], str], kind: str, listed: Iterable[Object]
) -> dict[str, Object | None]:
    changed: dict[str, Object | None] = {}
    present = set()
    for obj in listed:
        name = object_name(kind, obj)
        present.add(name)
        version = str(obj["metadata"].get("resourceVersion"))
        if seen.get((kind, name)) != version:
            seen[(kind, name)] = version
            changed[name] = obj
    for seen_kind, name in list(seen):
        if seen_kind == kind and name not in present:
            del seen[(seen_kind, name)]
            changed[name] = None
    return changed
