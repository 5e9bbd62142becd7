"""The gateway's configuration feed: Endpoint and Secret informers compiled into route tables.

The gateway role never reads the store on a request. This runnable keeps its own informers on
Endpoints and Secrets (list, then the store's watch) and, whenever something changed, compiles
the affected Endpoints and swaps a new :class:`~corral.gateway.RouteTable` into the gateway's
:class:`~corral.gateway.RouteSource`. Bursts coalesce: events only mark Endpoints dirty and ask
for one rebuild on the next loop iteration, so a relist of a thousand objects builds one table.

Only the ``apiKey`` of each Secret is kept here, and only to compile it into the upstream
headers of the Endpoints that name the Secret (``spec.runtime.secretRef``). A malformed
Endpoint is logged and left out; the others keep routing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from corral.api.kinds.endpoint import ENDPOINT
from corral.api.kinds.secret import SECRET
from corral.api.objects import Object
from corral.controllers import secret_api_key
from corral.controlplane import Informer, InformerEvent
from corral.gateway import EndpointRoute, RouteSource, RouteTable, compile_endpoint
from corral.server.informer_follow import follow_informers
from corral.store.protocol import Store

_log = logging.getLogger(__name__)

_Key = tuple[str, str]  # (namespace, name)


class RouteFeed:
    """Keeps ``routes`` equal to the compiled Endpoints in ``store``; run with :meth:`start`."""

    def __init__(self, store: Store, routes: RouteSource) -> None:
        self.routes = routes
        self._endpoint_informer = Informer(store, ENDPOINT.kind)
        self._secret_informer = Informer(store, SECRET.kind)
        self._endpoints: dict[_Key, Object] = {}
        self._api_keys: dict[str, str] = {}  # "namespace/secret" → apiKey
        self._compiled: dict[_Key, EndpointRoute] = {}
        self._dirty: set[_Key] = set()
        self._rebuild_scheduled = False
        self._synced = False
        self.rebuilds = 0
        """How many route tables were built (one per loop iteration with changes, at most)."""
        self._endpoint_informer.add_handler(self._on_endpoint)
        self._secret_informer.add_handler(self._on_secret)

    @property
    def ready(self) -> bool:
        """Both caches loaded and the first table built from them."""
        return self._synced and self.rebuilds > 0

    async def start(self, stop: asyncio.Event) -> None:
        """Follow the store until ``stop`` is set."""
        informers = (self._endpoint_informer, self._secret_informer)
        await follow_informers(informers, stop, self._on_synced)

    def _on_synced(self) -> None:
        # Routes are published only once both caches are whole: an Endpoint compiled before
        # its Secret arrived would briefly look unable to call its upstream.
        self._synced = True
        self._schedule_rebuild()

    def _on_endpoint(self, event: InformerEvent) -> None:
        key = _key_of(event.object)
        if event.type == "DELETED":
            self._endpoints.pop(key, None)
        else:
            self._endpoints[key] = event.object  # the informer's own copy: read, never changed
        self._dirty.add(key)
        self._schedule_rebuild()

    def _on_secret(self, event: InformerEvent) -> None:
        namespace, name = _key_of(event.object)
        secret = f"{namespace}/{name}"
        key = None if event.type == "DELETED" else secret_api_key(event.object)
        if key == self._api_keys.get(secret):
            return
        if key is None:
            self._api_keys.pop(secret, None)
        else:
            self._api_keys[secret] = key
        for endpoint_key, endpoint in self._endpoints.items():
            if endpoint_key[0] == namespace and _secret_ref(endpoint) == name:
                self._dirty.add(endpoint_key)
        self._schedule_rebuild()

    def _schedule_rebuild(self) -> None:
        if self._rebuild_scheduled or not self._synced:
            return
        self._rebuild_scheduled = True
        asyncio.get_running_loop().call_soon(self._rebuild)

    def _rebuild(self) -> None:
        self._rebuild_scheduled = False
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            endpoint = self._endpoints.get(key)
            self._compiled.pop(key, None)
            if endpoint is None:
                continue
            try:
                self._compiled[key] = compile_endpoint(endpoint, self._api_keys)
            except Exception as error:
                # One bad Endpoint must not take the others down; it answers 404 until fixed.
                _log.warning("Endpoint %s/%s is not routed: %s", key[0], key[1], error)
        self.routes.update(RouteTable(self._compiled.values()))
        self.rebuilds += 1


def _key_of(obj: Object) -> _Key:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _secret_ref(endpoint: Object) -> Any:
    return ((endpoint.get("spec") or {}).get("runtime") or {}).get("secretRef")
