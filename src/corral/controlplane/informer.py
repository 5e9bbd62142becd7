"""Informers: one kind's objects mirrored in memory, and its changes fanned out to handlers.

The informer lists the kind, then watches from the list's resourceVersion, applying every
event to an in-memory cache (client-go's reflector + indexer). Controllers read the cache
(:meth:`Informer.get`, :meth:`Informer.list`) instead of the store, and their event handlers
turn changes into workqueue keys. When the watch expires (``Gone``: the store compacted its
event log past our version) the informer relists and emits the differences, so handlers see
every object's latest state even across a gap; other watch errors retry with backoff from the
last version seen. Handlers run synchronously on the event path: they must only enqueue, and
must not modify the objects they are given (those are the cache's own).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson

from corral.api.errors import Gone
from corral.api.objects import Object, ObjectKey, object_key
from corral.controlplane.ratelimit import ExponentialBackoff
from corral.controlplane.runnable import run_until_stopped
from corral.store.protocol import EventType, Store, WatchEvent
from corral.store.selectors import parse_selector

logger = logging.getLogger(__name__)

IndexFunc = Callable[[Object], Iterable[str]]
"""The index values of an object (e.g. the uids of its owners)."""


@dataclass(frozen=True)
class InformerEvent:
    type: EventType
    object: Object
    old_object: Object | None = None
    """For MODIFIED: the object as cached before this change."""


EventHandler = Callable[[InformerEvent], None]


class HandlerRegistration:
    """Returned by :meth:`Informer.add_handler`; ``remove()`` stops the deliveries."""

    def __init__(self, handlers: list[EventHandler], handler: EventHandler) -> None:
        self._handlers = handlers
        self._handler = handler

    def remove(self) -> None:
        if self._handler in self._handlers:
            self._handlers.remove(self._handler)


class Informer:
    """List + watch + cache for one kind (optionally one namespace or label selector)."""

    needs_leader_election = False  # every replica keeps a warm cache

    def __init__(
        self,
        store: Store,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        page_size: int = 500,
    ) -> None:
        if not kind:
            raise ValueError("Informer needs a kind")
        if page_size < 1:
            raise ValueError(f"Informer page_size must be >= 1 (got {page_size})")
        self._store = store
        self._kind = kind
        self._namespace = namespace
        self._label_selector = label_selector
        self._page_size = page_size
        self._items: dict[ObjectKey, Object] = {}
        self._by_namespace: dict[str, set[ObjectKey]] = {}
        self._indexers: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[ObjectKey]]] = {}
        self._handlers: list[EventHandler] = []
        self._synced = asyncio.Event()
        self._resource_version: int | None = None
        self._running = False
        self._retry = ExponentialBackoff(base=0.2, cap=30.0)

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def has_synced(self) -> bool:
        """Whether the first list has been loaded into the cache."""
        return self._synced.is_set()

    @property
    def resource_version(self) -> int | None:
        """The store version the cache reflects (None before the first list)."""
        return self._resource_version

    async def wait_for_sync(self) -> None:
        await self._synced.wait()

    # Reading the cache. Callers get copies: a reconciler editing what it read must not
    # change what every other reader sees.

    def get(self, namespace: str, name: str) -> Object | None:
        obj = self._items.get(ObjectKey(self._kind, namespace, name))
        return None if obj is None else _copy(obj)

    def list(
        self, namespace: str | None = None, selector: str | None = None
    ) -> builtins.list[Object]:
        """Cached objects in ``namespace`` (all when None) matching the label ``selector``.

        ``selector`` has the store's Kubernetes syntax (``team=a,tier!=gpu``); a malformed one
        raises BadRequest. Objects come ordered by namespace, name.
        """
        matcher = parse_selector(selector) if selector else None
        keys = self._items.keys() if namespace is None else self._by_namespace.get(namespace, ())
        found = [self._items[key] for key in sorted(keys)]
        if matcher is not None:
            found = [obj for obj in found if matcher.matches(_labels(obj))]
        return [_copy(obj) for obj in found]

    def keys(self) -> builtins.list[ObjectKey]:
        return sorted(self._items)

    def add_index(self, name: str, index: IndexFunc) -> None:
        """Index the cache by ``index``'s values; :meth:`by_index` looks them up."""
        if name in self._indexers:
            raise ValueError(f"informer for {self._kind} already has an index named {name!r}")
        self._indexers[name] = index
        self._indices[name] = {}
        for key, obj in self._items.items():
            self._index_one(name, key, obj)

    def has_index(self, name: str) -> bool:
        return name in self._indexers

    def by_index(self, name: str, value: str) -> builtins.list[ObjectKey]:
        if name not in self._indices:
            raise KeyError(f"informer for {self._kind} has no index named {name!r}")
        return sorted(self._indices[name].get(value, ()))

    def add_handler(self, handler: EventHandler) -> HandlerRegistration:
        """Deliver every change to ``handler``, starting with ADDED for each cached object."""
        for obj in builtins.list(self._items.values()):
            _deliver(handler, InformerEvent("ADDED", obj))
        self._handlers.append(handler)
        return HandlerRegistration(self._handlers, handler)

    async def start(self, stop: asyncio.Event) -> None:
        """List, then follow the watch until ``stop``; a restart resumes from the last version."""
        if self._running:
            raise RuntimeError(f"the informer for {self._kind} is already running")
        self._running = True
        try:
            await run_until_stopped(self._run(), stop)
        finally:
            self._running = False

    async def _run(self) -> None:
        while True:
            try:
                if self._resource_version is None:
                    self._resource_version = await self._relist()
                    self._synced.set()
                await self._follow()
                # The store ended the stream (it is closing): pause before watching again.
                await asyncio.sleep(self._retry.when("watch"))
            except Gone:
                logger.info(
                    "watch expired, relisting",
                    extra={"kind": self._kind, "resource_version": self._resource_version},
                )
                self._resource_version = None
            except Exception:
                delay = self._retry.when("watch")
                logger.warning(
                    "list/watch failed, retrying",
                    exc_info=True,
                    extra={"kind": self._kind, "retry_in_s": delay},
                )
                await asyncio.sleep(delay)

    async def _relist(self) -> int:
        items: builtins.list[Object] = []
        listed_at: int | None = None
        token: str | None = None
        while True:
            page = await self._store.list(
                self._kind,
                self._namespace,
                label_selector=self._label_selector,
                limit=self._page_size,
                continue_token=token,
            )
            # Watching from the first page's version may replay changes later pages already
            # show; replays older than the cache are skipped, so that is harmless.
            if listed_at is None:
                listed_at = page.resource_version
            items.extend(page.items)
            token = page.continue_token
            if not token:
                break
        self._replace(items)
        self._retry.forget("watch")
        return listed_at

    async def _follow(self) -> None:
        stream = self._store.watch(
            self._kind,
            self._namespace,
            resource_version=self._resource_version,
            label_selector=self._label_selector,
        )
        try:
            async for event in stream:
                self._apply(event)
                self._resource_version = max(self._resource_version or 0, event.resource_version)
                self._retry.forget("watch")
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()

    def _apply(self, event: WatchEvent) -> None:
        obj = event.object
        key = object_key(obj)
        cached = self._items.get(key)
        if cached is not None and event.resource_version <= _version(cached):
            return  # a replay of something the cache already reflects
        if event.type == "DELETED":
            if cached is not None:
                self._remove(key)
                self._dispatch(InformerEvent("DELETED", obj))
            return
        self._upsert(key, obj, cached)

    def _replace(self, items: builtins.list[Object]) -> None:
        """Make the cache equal ``items``, emitting the events a watch would have carried."""
        listed = {object_key(obj): obj for obj in items}
        for key in [key for key in self._items if key not in listed]:
            gone = self._items[key]
            self._remove(key)
            self._dispatch(InformerEvent("DELETED", gone))
        for key, obj in listed.items():
            cached = self._items.get(key)
            if cached is None or _version(cached) != _version(obj):
                self._upsert(key, obj, cached)

    def _upsert(self, key: ObjectKey, obj: Object, cached: Object | None) -> None:
        if cached is not None and _uid(cached) != _uid(obj):
            # Deleted and re-created while we were not looking: a new object, not an update.
            self._remove(key)
            self._dispatch(InformerEvent("DELETED", cached))
            cached = None
        if cached is not None:
            self._unindex(key, cached)
        self._items[key] = obj
        self._by_namespace.setdefault(key.namespace, set()).add(key)
        for name in self._indexers:
            self._index_one(name, key, obj)
        if cached is None:
            self._dispatch(InformerEvent("ADDED", obj))
        else:
            self._dispatch(InformerEvent("MODIFIED", obj, cached))

    def _remove(self, key: ObjectKey) -> None:
        obj = self._items.pop(key)
        self._unindex(key, obj)
        in_namespace = self._by_namespace.get(key.namespace)
        if in_namespace is not None:
            in_namespace.discard(key)
            if not in_namespace:
                del self._by_namespace[key.namespace]

    def _index_one(self, name: str, key: ObjectKey, obj: Object) -> None:
        index = self._indices[name]
        for value in self._indexers[name](obj):
            index.setdefault(value, set()).add(key)

    def _unindex(self, key: ObjectKey, obj: Object) -> None:
        for name, indexer in self._indexers.items():
            index = self._indices[name]
            for value in indexer(obj):
                holders = index.get(value)
                if holders is not None:
                    holders.discard(key)
                    if not holders:
                        del index[value]

    def _dispatch(self, event: InformerEvent) -> None:
        for handler in builtins.list(self._handlers):
            _deliver(handler, event)


def _deliver(handler: EventHandler, event: InformerEvent) -> None:
    try:
        handler(event)
    except Exception:
        # One broken handler must not starve the others or stop the watch.
        logger.exception(
            "informer event handler failed",
            extra={"event": event.type, "key": str(object_key(event.object))},
        )


def _version(obj: Object) -> int:
    raw = (obj.get("metadata") or {}).get("resourceVersion") or 0
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0


def _uid(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _labels(obj: Object) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels")
    return labels if isinstance(labels, dict) else {}


def _copy(obj: Object) -> Object:
    copied: Object = orjson.loads(orjson.dumps(obj))
    return copied
