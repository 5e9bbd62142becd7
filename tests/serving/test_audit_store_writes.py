"""The audit extension's store wrapper over a real SQLite store (with Secret encryption, as the
server runs it): every accepted write is one ``written`` record with the actor and the new
resourceVersion, refused writes are ``rejected`` with the reason, reads, dry runs, no-op updates
and Lease renewals record nothing, and a Secret's values never reach the log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from corral.api.errors import AlreadyExists, Conflict, NotFound
from corral.audit import AuditEvent
from corral.server.audit_store import AuditingStore
from corral.store import open_store
from corral.store.encryption import EncryptingStore

SECRET_VALUE = "sk-never-in-the-audit-log-31d"


def team(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Team",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


@pytest.fixture
async def audited(tmp_path: Path) -> AsyncIterator[tuple[AuditingStore, list[AuditEvent]]]:
    events: list[AuditEvent] = []
    inner = EncryptingStore(
        await open_store(f"sqlite:///{tmp_path}/store.db"), Fernet.generate_key()
    )
    store = AuditingStore(inner, events.append)
    try:
        yield store, events
    finally:
        await store.close()


async def test_accepted_writes_are_recorded_with_actor_and_version(
    audited: tuple[AuditingStore, list[AuditEvent]],
) -> None:
    store, events = audited
    created = await store.create(team("search"), actor="admin")
    changed = dict(created, spec={"description": "the search team"})
    updated = await store.update(changed, actor="alice")
    unchanged = await store.update(updated, actor="alice")  # nothing differs: no version taken
    assert unchanged["metadata"]["resourceVersion"] == updated["metadata"]["resourceVersion"]
    await store.get("Team", "default", "search")
    await store.list("Team")
    deleted = await store.delete("Team", "default", "search", actor="bob")
    assert [(e.actor, e.action, e.resource, e.decision) for e in events] == [
        ("admin", "create", "Team/default/search", "written"),
        ("alice", "update", "Team/default/search", "written"),
        ("bob", "delete", "Team/default/search", "written"),
    ]
    assert events[0].details["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert events[1].details == {
        "resourceVersion": updated["metadata"]["resourceVersion"],
        "generation": 2,
    }
    assert events[2].details["resourceVersion"] == deleted["metadata"]["resourceVersion"]


async def test_refused_writes_are_recorded_as_rejected(
    audited: tuple[AuditingStore, list[AuditEvent]],
) -> None:
    store, events = audited
    created = await store.create(team("ops"), actor="admin")
    with pytest.raises(AlreadyExists):
        await store.create(team("ops"), actor="mallory")
    stale = dict(created, spec={"description": "x"})
    stale["metadata"] = dict(created["metadata"], resourceVersion="999")
    with pytest.raises(Conflict):
        await store.update(stale, actor="mallory")
    with pytest.raises(NotFound):
        await store.delete("Team", "default", "nobody", actor="mallory")
    rejected = [(e.actor, e.action, e.resource, e.details["reason"]) for e in events[1:]]
    assert rejected == [
        ("mallory", "create", "Team/default/ops", "AlreadyExists"),
        ("mallory", "update", "Team/default/ops", "Conflict"),
        ("mallory", "delete", "Team/default/nobody", "NotFound"),
    ]
    assert {e.decision for e in events[1:]} == {"rejected"}


async def test_apply_records_each_object_it_changed_and_dry_runs_nothing(
    audited: tuple[AuditingStore, list[AuditEvent]],
) -> None:
    store, events = audited
    secret = {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Secret",
        "metadata": {"name": "upstream", "namespace": "default"},
        "spec": {"type": "api-key", "data": {"apiKey": SECRET_VALUE}},
    }
    await store.apply([secret, team("a")], actor="admin", dry_run=True)
    assert events == []
    await store.apply([secret, team("a")], actor="admin")
    changed_secret = dict(secret, spec={"type": "api-key", "data": {"apiKey": SECRET_VALUE + "2"}})
    await store.apply([changed_secret, team("a")], actor="admin")  # team a unchanged
    assert [(e.action, e.resource) for e in events] == [
        ("apply:created", "Secret/default/upstream"),
        ("apply:created", "Team/default/a"),
        ("apply:configured", "Secret/default/upstream"),
    ]
    assert SECRET_VALUE not in repr(events)


async def test_status_writes_are_recorded_and_lease_renewals_are_not(
    audited: tuple[AuditingStore, list[AuditEvent]],
) -> None:
    store, events = audited
    created = await store.create(team("status"), actor="admin")
    await store.update_status(dict(created, status={"members": 3}))
    lease = {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Lease",
        "metadata": {"name": "leader", "namespace": "default"},
        "spec": {"holderIdentity": "replica-0", "leaseDurationSeconds": 15},
    }
    stored = await store.create(lease, actor="replica-0")
    await store.update(dict(stored, spec={**stored["spec"], "holderIdentity": "r1"}), actor="r1")
    assert [(e.actor, e.action) for e in events] == [
        ("admin", "create"),
        ("system:unnamed", "update-status"),
    ]
