"""The store protocol every backend implements, and the contract tests hold it to.

Semantics follow the Kubernetes API server over etcd:

- ``resourceVersion`` is one global, monotonic integer sequence across all kinds (like an etcd
  revision). Every write takes the next value; objects carry it as a decimal string.
- ``metadata.generation`` starts at 1 and is bumped only when ``spec`` changes.
- ``update`` writes metadata (labels, annotations, finalizers, ownerReferences) and spec, never
  status; ``update_status`` writes status only. Both are optimistic: when the object carries a
  ``resourceVersion`` that is not the stored one, :class:`~corral.api.errors.Conflict` is raised.
- ``delete`` of an object with finalizers only sets ``deletionTimestamp`` (a MODIFIED event); the
  object is removed (a DELETED event) when an update removes its last finalizer.
- Every write appends to an event log; ``watch`` replays the log after a resourceVersion and then
  follows new events, so a watcher that restarts from its last seen version misses nothing.
  The log is compacted; asking for a version older than what is retained raises
  :class:`~corral.api.errors.Gone` and the watcher must relist.
- Every spec change is recorded in the history (generation, actor, time, spec, diff).
- Objects are plain JSON dicts; the store fills the server-owned metadata (uid, generation,
  resourceVersion, creationTimestamp, deletionTimestamp) and ignores those fields on input.
- Objects larger than 1 MiB are refused with :class:`~corral.api.errors.Invalid`.
- Keys: ``namespace`` is ``""`` for cluster-scoped kinds; lookups take the kind name
  (``"Endpoint"``), not the plural.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from corral.api.objects import Object

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
ApplyAction = Literal["created", "configured", "unchanged", "pruned"]


@dataclass(frozen=True)
class WatchEvent:
    type: EventType
    object: Object
    resource_version: int


@dataclass(frozen=True)
class ListResult:
    items: list[Object]
    resource_version: int
    """The store's resourceVersion when the list was read: watch from here to follow it."""
    continue_token: str | None = None
    """Pass back as ``continue_token`` to read the next page; None on the last page."""


@dataclass(frozen=True)
class HistoryEntry:
    generation: int
    resource_version: int
    action: Literal["created", "updated", "deleted"]
    actor: str
    timestamp: str
    spec: Any
    labels: dict[str, str]
    diff: list[dict[str, Any]] = field(default_factory=list)
    """Changes from the previous generation: ``{"op": "add|remove|replace", "path", "value"?}``."""


@dataclass(frozen=True)
class ApplyOutcome:
    kind: str
    namespace: str
    name: str
    action: ApplyAction
    object: Object
    diff: list[dict[str, Any]] = field(default_factory=list)


class Store(Protocol):
    """The asynchronous store protocol (see the module docstring for the semantics)."""

    async def get(self, kind: str, namespace: str, name: str) -> Object:
        """The object, or raise NotFound."""
        ...

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        """Objects of ``kind`` (in ``namespace``, or all when None), ordered by namespace, name.

        ``label_selector`` uses Kubernetes syntax (``a=b,c!=d,e in (f,g),!h,i``); an invalid one
        raises BadRequest. ``limit`` pages (0 or None: everything); a stale or garbled continue
        token raises BadRequest. Every page of one paged list reports the first page's
        resourceVersion, so a watch from it after the last page misses nothing.
        """
        ...

    async def create(self, obj: Object, *, actor: str = "") -> Object:
        """Insert; raise AlreadyExists when the key is taken. Returns the stored object.

        ``status`` in the input is not stored (it belongs to controllers: ``update_status``).
        """
        ...

    async def update(self, obj: Object, *, actor: str = "") -> Object:
        """Replace metadata (user-owned fields) and spec; keep status. See module docstring.

        An update that changes nothing returns the stored object and takes no version (no
        event). Adding a finalizer to an object being deleted raises Invalid.
        """
        ...

    async def update_status(self, obj: Object) -> Object:
        """Replace status only; generation does not change."""
        ...

    async def delete(
        self,
        kind: str,
        namespace: str,
        name: str,
        *,
        actor: str = "",
        resource_version: str | None = None,
    ) -> Object:
        """Delete, respecting finalizers; returns the object as last stored (or as now marked).

        Deleting an object that is already marked returns it unchanged.
        """
        ...

    async def apply(
        self,
        objects: builtins.list[Object],
        *,
        actor: str = "",
        dry_run: bool = False,
        prune_selector: str | None = None,
        prune_kinds: builtins.list[str] | None = None,
    ) -> builtins.list[ApplyOutcome]:
        """Declarative apply of already-validated objects, in ONE transaction: all or nothing.

        Absent objects are created; present ones get the declared spec, labels and annotations
        (other metadata and status are kept) and are ``unchanged`` when nothing differs. With
        ``prune_selector``, objects of ``prune_kinds`` matching it that are not among
        ``objects`` are deleted (action ``pruned``). ``dry_run`` computes the same outcomes and
        diffs and writes nothing.

        A declared ``metadata.resourceVersion`` is a precondition (Conflict when stale). Pruning
        covers every namespace; an empty ``prune_selector`` is refused (BadRequest), and
        ``prune_kinds`` defaults to the kinds declared. Errors name the object as ``objects[i]``.
        """
        ...

    def watch(
        self,
        kind: str | None = None,
        namespace: str | None = None,
        *,
        resource_version: int | None = None,
        label_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Events after ``resource_version`` (None: from now), then live ones, until closed.

        Raise Gone (on first iteration) when the version is older than the retained log.
        With a label selector, an object that starts matching arrives as ADDED and one that
        stops matching as DELETED. The backends return an async generator: ``aclose()`` it (or
        use ``contextlib.aclosing``) to stop watching; closing the store ends it too.
        """
        ...

    async def history(self, kind: str, namespace: str, name: str) -> builtins.list[HistoryEntry]:
        """Every recorded spec change of the object, oldest first (kept after deletion)."""
        ...

    async def current_resource_version(self) -> int: ...

    async def close(self) -> None: ...
