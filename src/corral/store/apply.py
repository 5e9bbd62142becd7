"""Declarative apply: the plan both backends execute in one transaction (or only report, dry-run).

``prepare_apply`` checks the request before any transaction opens (objects, duplicate keys, the
prune selector). The backend then reads the stored objects with those keys plus, when pruning,
every object of the prune kinds, and ``plan_apply`` decides each outcome:

- absent → ``created``; present → the declared spec, labels and annotations replace the stored
  ones (finalizers, owner references and status are kept) → ``configured``, or ``unchanged``
  when nothing differs;
- with a prune selector, stored objects of the prune kinds (in every namespace) that match it and
  are not declared → ``pruned`` (finalizers respected, as ``delete`` does).

Any failure raises before the backend writes anything, so an apply is all or nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from corral.api.errors import ApiError, BadRequest
from corral.api.objects import Object, ObjectKey, object_key
from corral.store.diffs import json_diff
from corral.store.protocol import ApplyOutcome
from corral.store.selectors import LabelSelector, parse_selector
from corral.store.semantics import (
    Change,
    RvCounter,
    labels_of,
    normalize_input,
    plan_create,
    plan_delete,
    plan_update,
)


@dataclass(frozen=True)
class ApplyRequest:
    objects: list[Object]
    keys: list[ObjectKey]
    prune_selector: LabelSelector | None
    prune_kinds: list[str]


def prepare_apply(
    objects: list[Object], prune_selector: str | None, prune_kinds: list[str] | None
) -> ApplyRequest:
    declared = [normalize_input(obj, f"objects[{index}]") for index, obj in enumerate(objects)]
    keys = [object_key(obj) for obj in declared]
    first_index: dict[ObjectKey, int] = {}
    for index, key in enumerate(keys):
        if key in first_index:
            raise BadRequest(
                f"objects[{index}]: {key} is declared twice (first at objects[{first_index[key]}])"
            )
        first_index[key] = index
    selector = None
    if prune_selector is not None:
        selector = parse_selector(prune_selector)
        if selector.is_empty:
            raise BadRequest(
                "prune_selector is empty: it would prune every object of the prune kinds; "
                "give a selector that matches only the objects this apply owns"
            )
    kinds = list(prune_kinds) if prune_kinds is not None else sorted({key.kind for key in keys})
    return ApplyRequest(declared, keys, selector, kinds if selector is not None else [])


def plan_apply(
    request: ApplyRequest,
    current: Mapping[ObjectKey, Object],
    prune_candidates: Iterable[Object],
    rvs: RvCounter,
    *,
    actor: str,
    now: str,
) -> tuple[list[Change], list[ApplyOutcome]]:
    """The writes and the outcomes of one apply; raises (naming ``objects[i]``) on any problem."""
    changes: list[Change] = []
    outcomes: list[ApplyOutcome] = []
    for index, (declared, key) in enumerate(zip(request.objects, request.keys, strict=True)):
        stored = current.get(key)
        try:
            if stored is None:
                change = plan_create(declared, None, rvs, actor=actor, now=now)
                changes.append(change)
                diff = json_diff({}, _declared_view(change.obj))
                outcomes.append(_outcome(key, "created", change.obj, diff))
                continue
            change_or_none = plan_update(
                _merged(declared, stored), stored, rvs, actor=actor, now=now
            )
        except ApiError as error:
            raise type(error)(f"objects[{index}]: {error.message}", causes=error.causes) from None
        if change_or_none is None:
            outcomes.append(_outcome(key, "unchanged", stored, []))
            continue
        changes.append(change_or_none)
        diff = json_diff(_declared_view(stored), _declared_view(change_or_none.obj))
        outcomes.append(_outcome(key, "configured", change_or_none.obj, diff))
    if request.prune_selector is not None:
        declared_keys = set(request.keys)
        for candidate in prune_candidates:
            key = object_key(candidate)
            if (
                key in declared_keys
                or "deletionTimestamp" in candidate["metadata"]
                or not request.prune_selector.matches(labels_of(candidate))
            ):
                continue
            pruned, reply = plan_delete(key, candidate, rvs, actor=actor, now=now)
            if pruned is not None:
                changes.append(pruned)
            outcomes.append(
                _outcome(key, "pruned", reply, json_diff(_declared_view(candidate), {}))
            )
    return changes, outcomes


def _merged(declared: Object, stored: Object) -> Object:
    """The update an apply makes: declared spec, labels and annotations over the stored object."""
    metadata = dict(stored["metadata"])
    for field in ("labels", "annotations"):
        if field in declared["metadata"]:
            metadata[field] = declared["metadata"][field]
        else:
            metadata.pop(field, None)
    # A declared resourceVersion is a precondition; without one, apply writes over any version.
    metadata["resourceVersion"] = declared["metadata"].get("resourceVersion") or metadata.get(
        "resourceVersion"
    )
    merged: Object = {**stored, "metadata": metadata}
    merged["apiVersion"] = declared.get("apiVersion") or stored.get("apiVersion")
    if "spec" in declared:
        merged["spec"] = declared["spec"]
    else:
        merged.pop("spec", None)
    return merged


def _declared_view(obj: Object) -> dict[str, Any]:
    """The part of an object that apply owns, as diffs show it."""
    view: dict[str, Any] = {}
    metadata = {
        field: obj["metadata"][field]
        for field in ("labels", "annotations")
        if obj["metadata"].get(field)
    }
    if metadata:
        view["metadata"] = metadata
    if "spec" in obj:
        view["spec"] = obj["spec"]
    return view


def _outcome(key: ObjectKey, action: Any, obj: Object, diff: list[dict[str, Any]]) -> ApplyOutcome:
    return ApplyOutcome(key.kind, key.namespace, key.name, action, obj, diff)
