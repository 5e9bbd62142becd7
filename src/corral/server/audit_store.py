"""A :class:`~corral.store.protocol.Store` wrapper that records every control-plane write in the
audit log (the audit extension's ``wrap_store``).

Writes (create, update, update_status, delete, and each object an apply created, configured or
pruned) become one audit event each once the store accepted them: actor, action, resource
``Kind/namespace/name``, decision ``written`` and the new resourceVersion. A create, update,
delete or apply the store refuses (a conflict, an invalid object, a missing one) is recorded as
``rejected`` with the reason; refused status writes are not (controllers retry those on every
optimistic-concurrency conflict, which is bookkeeping, not a decision). Reads and dry runs are
not audited, and neither are Lease writes: leader election renews its Lease every few seconds,
which is liveness bookkeeping and would drown the log.

Only names and versions reach the log, never a spec, a diff or status: a Secret's values, which
this wrapper sees in plain text, cannot leak into the audit details. Recording queues the event
(``AuditSink.record``) and never waits for the database.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable
from typing import Any

from corral.api.errors import ApiError
from corral.api.objects import Object
from corral.audit import AuditEvent
from corral.store.protocol import ApplyOutcome, HistoryEntry, ListResult, Store, WatchEvent

UNNAMED_ACTOR = "system:unnamed"
"""The actor of a write that named none (controllers writing status, internal bookkeeping)."""

UNAUDITED_KINDS = frozenset({"Lease"})

Record = Callable[[AuditEvent], None]


def resource_name(kind: str, namespace: str, name: str) -> str:
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def _identity(obj: Object) -> tuple[str, str, str]:
    metadata = obj.get("metadata") or {}
    return (
        str(obj.get("kind") or "?"),
        str(metadata.get("namespace") or ""),
        str(metadata.get("name") or "?"),
    )


def _written(actor: str, action: str, obj: Object) -> AuditEvent:
    kind, namespace, name = _identity(obj)
    metadata = obj.get("metadata") or {}
    details: dict[str, Any] = {"resourceVersion": str(metadata.get("resourceVersion") or "")}
    generation = metadata.get("generation")
    if isinstance(generation, int):
        details["generation"] = generation
    if metadata.get("deletionTimestamp"):
        details["deleting"] = True
    return AuditEvent(
        actor=actor or UNNAMED_ACTOR,
        action=action,
        resource=resource_name(kind, namespace, name),
        decision="written",
        details=details,
    )


def _rejected(actor: str, action: str, resource: str, error: ApiError, **extra: Any) -> AuditEvent:
    return AuditEvent(
        actor=actor or UNNAMED_ACTOR,
        action=action,
        resource=resource,
        decision="rejected",
        details={"reason": error.reason, "code": error.code, **extra},
    )


class AuditingStore:
    """``inner`` with its writes recorded through ``record`` (which must not block)."""

    def __init__(self, inner: Store, record: Record) -> None:
        self._inner = inner
        self._sink = record

    def _record(self, event: AuditEvent) -> None:
        if event.resource.split("/", 1)[0] not in UNAUDITED_KINDS:
            self._sink(event)

    def __getattr__(self, name: str) -> Any:
        # Backend extras (leader leases, metrics) pass through; writes are the protocol's.
        return getattr(self._inner, name)

    # -- reads: not audited -----------------------------------------------------------------

    async def get(self, kind: str, namespace: str, name: str) -> Object:
        return await self._inner.get(kind, namespace, name)

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        return await self._inner.list(
            kind,
            namespace,
            label_selector=label_selector,
            limit=limit,
            continue_token=continue_token,
        )

    def watch(
        self,
        kind: str | None = None,
        namespace: str | None = None,
        *,
        resource_version: int | None = None,
        label_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        return self._inner.watch(
            kind, namespace, resource_version=resource_version, label_selector=label_selector
        )

    async def history(self, kind: str, namespace: str, name: str) -> builtins.list[HistoryEntry]:
        return await self._inner.history(kind, namespace, name)

    async def current_resource_version(self) -> int:
        return await self._inner.current_resource_version()

    async def close(self) -> None:
        await self._inner.close()

    # -- writes: recorded -------------------------------------------------------------------

    async def create(self, obj: Object, *, actor: str = "") -> Object:
        try:
            stored = await self._inner.create(obj, actor=actor)
        except ApiError as error:
            self._record(_rejected(actor, "create", resource_name(*_identity(obj)), error))
            raise
        self._record(_written(actor, "create", stored))
        return stored

    async def update(self, obj: Object, *, actor: str = "") -> Object:
        before = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        try:
            stored = await self._inner.update(obj, actor=actor)
        except ApiError as error:
            self._record(_rejected(actor, "update", resource_name(*_identity(obj)), error))
            raise
        # An update that changes nothing takes no version: nothing was written.
        if not before or (stored.get("metadata") or {}).get("resourceVersion") != before:
            self._record(_written(actor, "update", stored))
        return stored

    async def update_status(self, obj: Object) -> Object:
        stored = await self._inner.update_status(obj)
        self._record(_written("", "update-status", stored))
        return stored

    async def delete(
        self,
        kind: str,
        namespace: str,
        name: str,
        *,
        actor: str = "",
        resource_version: str | None = None,
    ) -> Object:
        try:
            stored = await self._inner.delete(
                kind, namespace, name, actor=actor, resource_version=resource_version
            )
        except ApiError as error:
            self._record(_rejected(actor, "delete", resource_name(kind, namespace, name), error))
            raise
        self._record(_written(actor, "delete", stored))
        return stored

    async def apply(
        self,
        objects: builtins.list[Object],
        *,
        actor: str = "",
        dry_run: bool = False,
        prune_selector: str | None = None,
        prune_kinds: builtins.list[str] | None = None,
    ) -> builtins.list[ApplyOutcome]:
        try:
            outcomes = await self._inner.apply(
                objects,
                actor=actor,
                dry_run=dry_run,
                prune_selector=prune_selector,
                prune_kinds=prune_kinds,
            )
        except ApiError as error:
            if not dry_run:
                resources = [resource_name(*_identity(obj)) for obj in objects]
                resource = resources[0] if len(resources) == 1 else "apply-batch"
                self._record(_rejected(actor, "apply", resource, error, resources=resources))
            raise
        if not dry_run:
            for outcome in outcomes:
                if outcome.action != "unchanged":
                    self._record(_written(actor, f"apply:{outcome.action}", outcome.object))
        return outcomes
