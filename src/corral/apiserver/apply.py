"""``POST /apis/corral.dev/v1alpha1/apply``: a whole manifest set in one request.

This is corral's batch extension behind ``corral apply`` and ``corral diff``. Every item is
validated first and every problem reported with its manifest location (``file.yaml[1]``);
duplicates and objects in namespaces that neither exist nor are declared in the batch are
problems too. Only when there are none does ``Store.apply`` run, in one transaction, so an apply
is all or nothing.

Body: ``{"items": [obj...], "locations": ["file.yaml[0]"...]?, "dryRun": bool?,
"prune": {"selector": "app=x", "kinds": ["Model"...]?}?}``. Without ``prune.kinds`` every kind
but Namespace is pruned (only objects matching the selector are ever pruned).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from corral.api.errors import BadRequest, FieldError, Invalid
from corral.api.objects import Object, object_key
from corral.api.registry import all_kinds, lookup_kind
from corral.api.validation import validate_documents
from corral.apiserver.namespaces import NAMESPACE_KIND, missing_namespaces
from corral.apiserver.resources import actor_of
from corral.apiserver.wire import (
    MAX_APPLY_BODY,
    json_response,
    parse_json,
    read_body,
    require_json_body,
)
from corral.store.protocol import Store

_BODY_KEYS = {"items", "locations", "dryRun", "prune"}
_PRUNE_KEYS = {"selector", "kinds"}


@dataclass(frozen=True)
class _ApplyRequest:
    items: list[Any]
    locations: list[str]
    dry_run: bool
    prune_selector: str | None
    prune_kinds: list[str] | None


async def apply_handler(store: Store, request: Request) -> Response:
    require_json_body(request)
    batch = _parse_request(parse_json(await read_body(request, MAX_APPLY_BODY)))
    objects = await _validated_batch(store, batch)
    outcomes = await store.apply(
        objects,
        actor=actor_of(request),
        dry_run=batch.dry_run,
        prune_selector=batch.prune_selector,
        prune_kinds=batch.prune_kinds,
    )
    return json_response(
        {
            "dryRun": batch.dry_run,
            "items": [
                {
                    "kind": outcome.kind,
                    "namespace": outcome.namespace,
                    "name": outcome.name,
                    "action": outcome.action,
                    "diff": outcome.diff,
                }
                for outcome in outcomes
            ],
        }
    )


def _parse_request(body: Any) -> _ApplyRequest:
    if not isinstance(body, dict):
        raise BadRequest(f"the apply body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - _BODY_KEYS)
    if unknown:
        raise BadRequest(f"unknown field(s) in the apply body: {', '.join(unknown)}")
    items = body.get("items")
    if not isinstance(items, list):
        raise BadRequest("items: required, a list of objects")
    locations = body.get("locations")
    if locations is None:
        locations = [f"items[{index}]" for index in range(len(items))]
    elif (
        not isinstance(locations, list)
        or len(locations) != len(items)
        or not all(isinstance(location, str) for location in locations)
    ):
        raise BadRequest(f"locations: expected a list of {len(items)} strings, one per item")
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise BadRequest(f"dryRun: expected true or false, got {dry_run!r}")
    selector, kinds = _parse_prune(body.get("prune"))
    return _ApplyRequest(items, locations, dry_run, selector, kinds)


def _parse_prune(prune: Any) -> tuple[str | None, list[str] | None]:
    if prune is None:
        return None, None
    if not isinstance(prune, dict):
        raise BadRequest("prune: expected an object {selector, kinds}")
    unknown = sorted(set(prune) - _PRUNE_KEYS)
    if unknown:
        raise BadRequest(f"unknown field(s) in prune: {', '.join(unknown)}")
    selector = prune.get("selector")
    if not isinstance(selector, str) or not selector.strip():
        raise BadRequest("prune.selector: required, a label selector such as 'app=chat'")
    raw_kinds = prune.get("kinds")
    if raw_kinds is None:
        return selector, [info.kind for info in all_kinds() if info.kind != NAMESPACE_KIND]
    if not isinstance(raw_kinds, list) or not all(isinstance(k, str) for k in raw_kinds):
        raise BadRequest("prune.kinds: expected a list of kind names")
    kinds: list[str] = []
    for index, name in enumerate(raw_kinds):
        info = lookup_kind(name)
        if info is None:
            raise BadRequest(f"prune.kinds[{index}]: unknown kind {name!r}")
        if info.kind == NAMESPACE_KIND:
            raise BadRequest(
                f"prune.kinds[{index}]: Namespaces are never pruned; delete one explicitly "
                "once it is empty"
            )
        if info.kind not in kinds:
            kinds.append(info.kind)
    return selector, kinds


async def _validated_batch(store: Store, batch: _ApplyRequest) -> list[Object]:
    """Every item validated; raise Invalid naming every problem of every item."""
    located, problems = validate_documents(zip(batch.items, batch.locations, strict=True))
    keys = [object_key(obj) for obj, _ in located]
    declared = {key.name for key in keys if key.kind == NAMESPACE_KIND}
    wanted = {key.namespace for key in keys if key.namespace} - declared
    missing = await missing_namespaces(store, wanted)
    for obj, location in located:
        namespace = object_key(obj).namespace
        if namespace in missing:
            problems.append(
                FieldError(
                    "metadata.namespace",
                    f"namespace {namespace!r} does not exist: declare a Namespace "
                    f"{namespace!r} in this apply or create it first",
                    location,
                )
            )

    if problems:
        where = {problem.location for problem in problems}
        raise Invalid(
            f"apply refused, nothing was applied: {len(problems)} problem(s) in "
            f"{len(where)} of {len(batch.items)} object(s)",
            causes=problems,
        )
    return [obj for obj, _ in located]
