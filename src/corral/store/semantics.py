"""The write rules both backends share: what a create, update, status update or delete stores.

A backend opens a transaction, reads the current rows, asks a ``plan_*`` function what to write,
and writes the resulting :class:`Change` list (object row, watch event, history record). The
functions here never touch a database, so the rules (server-owned metadata, generation bumps,
finalizers, optimistic concurrency, the size limit) are written once and hold for every backend.

Every change takes the next resourceVersion from an :class:`RvCounter` seeded with the stored
head, so the sequence stays dense: each version is exactly one event. A write that changes
nothing takes no version and produces no event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import orjson

from corral.api.errors import AlreadyExists, BadRequest, Conflict, FieldError, Invalid, NotFound
from corral.api.objects import API_VERSION, MAX_OBJECT_BYTES, Object, ObjectKey, object_key
from corral.api.registry import lookup_kind
from corral.store.diffs import json_diff
from corral.store.protocol import EventType

SERVER_OWNED_METADATA = (
    "uid",
    "generation",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
)


class RvCounter:
    """Hands out resourceVersions inside one write transaction, starting after the stored head."""

    def __init__(self, head: int) -> None:
        self.head = head
        self.taken = 0

    def take(self) -> int:
        self.taken += 1
        return self.head + self.taken

    @property
    def last(self) -> int:
        return self.head + self.taken


@dataclass(frozen=True)
class HistoryRecord:
    generation: int
    action: str  # "created" | "updated" | "deleted"
    actor: str
    timestamp: str
    spec: Any
    labels: dict[str, str]
    diff: list[dict[str, Any]]


@dataclass(frozen=True)
class Change:
    """One write: the object row to upsert (or remove), its watch event and its history record."""

    key: ObjectKey
    rv: int
    event_type: EventType
    obj: Object
    data: bytes  # ``obj`` serialised once: the stored row, the event payload and the reply
    removed: bool
    prev_labels: bytes | None  # labels before the change, for selector transitions in watch
    history: HistoryRecord | None

    @property
    def uid(self) -> str:
        return str(self.obj["metadata"]["uid"])


def normalize_input(obj: Object, location: str = "") -> Object:
    """A private deep copy of a caller's object with its key fields checked.

    The JSON round trip detaches the copy from the caller's dicts and turns tuples into lists,
    so later comparisons see the object exactly as it will be stored.
    """
    where = f"{location}: " if location else ""
    if not isinstance(obj, dict):
        raise Invalid(f"{where}an object must be a JSON object, got {type(obj).__name__}")
    try:
        copy: Object = orjson.loads(orjson.dumps(obj))
    except (orjson.JSONEncodeError, TypeError) as error:
        raise Invalid(f"{where}the object is not JSON-serialisable: {error}") from None
    problems: list[FieldError] = []
    kind = copy.get("kind")
    metadata = copy.get("metadata")
    if not isinstance(kind, str) or not kind:
        problems.append(FieldError("kind", "is required", location))
    if not isinstance(metadata, dict):
        problems.append(FieldError("metadata", "is required", location))
    else:
        name = metadata.get("name")
        if not isinstance(name, str) or not name:
            problems.append(FieldError("metadata.name", "is required", location))
        namespace = metadata.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            problems.append(FieldError("metadata.namespace", "must be a string", location))
        for field in ("labels", "annotations"):
            value = metadata.get(field)
            if value is not None and not (
                isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
            ):
                problems.append(
                    FieldError(f"metadata.{field}", "must map strings to strings", location)
                )
        finalizers = metadata.get("finalizers")
        if finalizers is not None and not (
            isinstance(finalizers, list) and all(isinstance(f, str) for f in finalizers)
        ):
            problems.append(
                FieldError("metadata.finalizers", "must be a list of strings", location)
            )
        rv = metadata.get("resourceVersion")
        if rv not in (None, "") and not (isinstance(rv, str) and rv.isdigit()):
            problems.append(
                FieldError("metadata.resourceVersion", "must be a decimal string", location)
            )
    if problems:
        raise Invalid(f"{where}the object cannot be stored", causes=problems)
    return copy


def encode(obj: Object, key: ObjectKey) -> bytes:
    """Serialise a stored object, refusing anything over the size limit."""
    data = orjson.dumps(obj)
    if len(data) > MAX_OBJECT_BYTES:
        raise Invalid(
            f"{key} is {len(data)} bytes serialised; objects are limited to "
            f"{MAX_OBJECT_BYTES} bytes (1 MiB)"
        )
    return data


def labels_of(obj: Object) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return dict(labels)


def check_precondition(key: ObjectKey, expected: Any, current: Object) -> None:
    """Optimistic concurrency: a given resourceVersion must be the stored one."""
    if expected in (None, ""):
        return
    if not (isinstance(expected, str) and expected.isdigit()):
        raise BadRequest(f"{key}: resourceVersion must be a decimal string, got {expected!r}")
    stored = current["metadata"]["resourceVersion"]
    if expected != stored:
        raise Conflict(
            f"{key} was modified: resourceVersion {expected} is stale (stored is {stored}); "
            "re-read the object and retry"
        )


def plan_create(
    obj: Object, current: Object | None, rvs: RvCounter, *, actor: str, now: str
) -> Change:
    """Create: fresh server-owned metadata; status is not written (it belongs to controllers)."""
    key = object_key(obj)
    if current is not None:
        raise AlreadyExists(f"{key} already exists")
    metadata = _user_metadata(obj["metadata"])
    rv = rvs.take()
    metadata.update(uid=str(uuid4()), generation=1, resourceVersion=str(rv), creationTimestamp=now)
    stored = _assemble(obj.get("apiVersion") or API_VERSION, key.kind, metadata, obj, None)
    history = HistoryRecord(
        generation=1,
        action="created",
        actor=actor,
        timestamp=now,
        spec=stored.get("spec"),
        labels=labels_of(stored),
        diff=json_diff({}, {"spec": stored.get("spec")}),
    )
    return Change(key, rv, "ADDED", stored, encode(stored, key), False, None, history)


def plan_update(
    obj: Object, current: Object | None, rvs: RvCounter, *, actor: str, now: str
) -> Change | None:
    """Update metadata and spec; None when nothing would change (no write, no new version)."""
    key = object_key(obj)
    if current is None:
        raise NotFound(f"{key} not found")
    check_precondition(key, obj["metadata"].get("resourceVersion"), current)
    current_meta = current["metadata"]
    metadata = _user_metadata(obj["metadata"])
    for field in SERVER_OWNED_METADATA:
        if field in current_meta:
            metadata[field] = current_meta[field]
    deleting = "deletionTimestamp" in current_meta
    if deleting:
        added = set(metadata.get("finalizers") or []) - set(current_meta.get("finalizers") or [])
        if added:
            raise Invalid(
                f"{key} is being deleted: no new finalizers can be added "
                f"(tried {', '.join(sorted(added))})",
                causes=[FieldError("metadata.finalizers", "no new finalizers while deleting")],
            )
    spec_changed = obj.get("spec") != current.get("spec")
    if spec_changed:
        metadata["generation"] = int(current_meta.get("generation", 0)) + 1
    api_version = obj.get("apiVersion") or current.get("apiVersion") or API_VERSION
    stored = _assemble(api_version, key.kind, metadata, obj, current.get("status"))
    if stored == current:
        return None
    rv = rvs.take()
    metadata["resourceVersion"] = str(rv)
    removed = deleting and not metadata.get("finalizers")
    history = None
    if spec_changed and _records_history(key.kind):
        history = HistoryRecord(
            generation=metadata["generation"],
            action="updated",
            actor=actor,
            timestamp=now,
            spec=stored.get("spec"),
            labels=labels_of(stored),
            diff=json_diff(current.get("spec"), stored.get("spec"), "/spec"),
        )
    return Change(
        key,
        rv,
        "DELETED" if removed else "MODIFIED",
        stored,
        encode(stored, key),
        removed,
        orjson.dumps(labels_of(current)),
        history,
    )


def plan_update_status(obj: Object, current: Object | None, rvs: RvCounter) -> Change | None:
    """Replace status only; generation stays. None when the status is already the stored one."""
    key = object_key(obj)
    if current is None:
        raise NotFound(f"{key} not found")
    check_precondition(key, obj["metadata"].get("resourceVersion"), current)
    stored = dict(current)
    stored["metadata"] = dict(current["metadata"])
    if "status" in obj:
        stored["status"] = obj["status"]
    else:
        stored.pop("status", None)
    if stored == current:
        return None
    rv = rvs.take()
    stored["metadata"]["resourceVersion"] = str(rv)
    labels = orjson.dumps(labels_of(current))
    return Change(key, rv, "MODIFIED", stored, encode(stored, key), False, labels, None)


def plan_delete(
    key: ObjectKey,
    current: Object | None,
    rvs: RvCounter,
    *,
    actor: str,
    now: str,
    resource_version: str | None = None,
) -> tuple[Change | None, Object]:
    """Delete, or only mark for deletion while finalizers remain.

    Returns the change (None when the object is already marked) and the object to reply with.
    """
    if current is None:
        raise NotFound(f"{key} not found")
    check_precondition(key, resource_version, current)
    metadata = dict(current["metadata"])
    finalizers = metadata.get("finalizers") or []
    if finalizers and "deletionTimestamp" in metadata:
        return None, current
    rv = rvs.take()
    metadata["resourceVersion"] = str(rv)
    if finalizers:
        metadata["deletionTimestamp"] = now
    stored = {**current, "metadata": metadata}
    history = HistoryRecord(
        generation=int(metadata.get("generation", 1)),
        action="deleted",
        actor=actor,
        timestamp=now,
        spec=stored.get("spec"),
        labels=labels_of(stored),
        diff=[],
    )
    change = Change(
        key,
        rv,
        "MODIFIED" if finalizers else "DELETED",
        stored,
        encode(stored, key),
        not finalizers,
        orjson.dumps(labels_of(current)),
        history,
    )
    return change, stored


def _records_history(kind: str) -> bool:
    info = lookup_kind(kind)
    return info.record_history if info is not None else True


def _user_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The caller's metadata without server-owned fields, namespace normalised."""
    kept = {key: value for key, value in metadata.items() if key not in SERVER_OWNED_METADATA}
    if not kept.get("namespace"):
        kept.pop("namespace", None)
    return kept


def _assemble(
    api_version: str, kind: str, metadata: dict[str, Any], source: Object, status: Any
) -> Object:
    """The stored envelope in a stable key order; spec from ``source``, status as given."""
    stored: Object = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
    if "spec" in source:
        stored["spec"] = source["spec"]
    if status is not None:
        stored["status"] = status
    return stored
