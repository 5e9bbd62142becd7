"""Offline evaluation for ``corral policy test``: policies + one request in, the decision out.

No store and no server: the CLI loads Policy manifests and a request description (JSON or
YAML) and calls ``evaluate_request``. Unlike the engine, which fails closed on a bad stored
policy, this is strict: an invalid policy or request raises with every problem's location, so
a policy author sees what to fix rather than a puzzling deny.

A request description::

    principal: {kind: team-key, id: default/ci-key, team: admins, namespace: default}
    action: invoke                        # invoke | call | call_without_approval | apply | delete
    resource: {kind: Endpoint, metadata: {name: chat, namespace: default, labels: {team: a}}}
    context: {model: chat, estimated_tokens: 900, time: "2026-01-05T10:00:00Z"}
    entities: []                          # more Cedar entities, if policies refer to them

``principal`` is either corral's principal fields (``kind``: user, team-key or workload) or a
Cedar entity (``type``, ``id``, ``attrs``, ``parents``, ``tags``); ``resource`` either a corral
object (``kind`` + ``metadata``) or a Cedar entity. In ``context``, ``time`` may be an RFC 3339
string, ``client_ip`` a plain address, and for ``call`` the ``arguments`` a plain mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from corral.api import BadRequest, FieldError, Invalid
from corral.api.manifest import ManifestDocument
from corral.api.validation import validate_object
from corral.policy.engine import Decision, build_snapshot, decide
from corral.policy.entities import (
    Entity,
    EntityUid,
    call_context,
    clock,
    object_entity,
    principal_entity,
)

ACTIONS = ("invoke", "call", "call_without_approval", "apply", "delete")


def evaluate_request(
    policies: Iterable[ManifestDocument | Mapping[str, Any]],
    request: Any,
    *,
    location: str = "request",
) -> Decision:
    """Decide ``request`` against ``policies``; raise ``Invalid``/``BadRequest`` on bad input."""
    objects = _validated_policies(policies)
    problems: list[FieldError] = []
    if not isinstance(request, Mapping):
        raise BadRequest(
            f"{location}: invalid request", causes=[_at("", "expected a mapping", location)]
        )
    for key in request:
        if key not in ("principal", "action", "resource", "context", "entities"):
            problems.append(_at(str(key), "unknown field", location))
    action = request.get("action")
    if action not in ACTIONS:
        problems.append(_at("action", f"must be one of {', '.join(ACTIONS)}", location))
    principal = _principal(request.get("principal"), problems, location)
    resource = _resource(request.get("resource"), problems, location)
    extra = [
        entity
        for index, raw in enumerate(request.get("entities") or [])
        if (entity := _entity(raw, f"entities[{index}]", problems, location)) is not None
    ]
    context = _context(request.get("context"), str(action), problems, location, extra)
    if problems or principal is None or resource is None:
        raise BadRequest(f"{location}: invalid request", causes=problems)
    snapshot = build_snapshot(objects)
    return decide(snapshot, principal, str(action), resource, context, entities=extra)


def _validated_policies(
    policies: Iterable[ManifestDocument | Mapping[str, Any]],
) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    problems: list[FieldError] = []
    for index, item in enumerate(policies):
        doc, where = (
            (item.body, item.location)
            if isinstance(item, ManifestDocument)
            else (item, f"policies[{index}]")
        )
        if not isinstance(doc, Mapping) or doc.get("kind") != "Policy":
            problems.append(FieldError("kind", "expected a Policy", where))
            continue
        try:
            objects.append(validate_object(dict(doc), location=where))
        except Invalid as error:
            problems.extend(error.causes)
    if problems:
        raise Invalid("invalid policies", causes=problems)
    return objects


def _at(path: str, message: str, location: str) -> FieldError:
    return FieldError(path, message, location)


def _principal(raw: Any, problems: list[FieldError], location: str) -> Entity | None:
    if isinstance(raw, Mapping) and "kind" in raw:
        try:
            return principal_entity(
                raw["kind"],
                str(raw.get("id", "")),
                team=raw.get("team"),
                namespace=raw.get("namespace"),
                labels=dict(raw.get("labels") or {}),
                act=tuple(raw.get("act") or ()),
            )
        except ValueError as error:
            problems.append(_at("principal", str(error), location))
            return None
    return _entity(raw, "principal", problems, location)


def _resource(raw: Any, problems: list[FieldError], location: str) -> Entity | None:
    if isinstance(raw, Mapping) and "kind" in raw:
        try:
            return object_entity(raw)
        except ValueError as error:
            problems.append(_at("resource", str(error), location))
            return None
    return _entity(raw, "resource", problems, location)


def _entity(raw: Any, path: str, problems: list[FieldError], location: str) -> Entity | None:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("type"), str):
        problems.append(_at(f"{path}.type", "required: a Cedar entity type", location))
        return None
    if not isinstance(raw.get("id"), str):
        problems.append(_at(f"{path}.id", "required: a string", location))
        return None
    parents: list[EntityUid] = []
    for index, parent in enumerate(raw.get("parents") or []):
        if isinstance(parent, Mapping) and isinstance(parent.get("type"), str):
            parents.append((parent["type"], str(parent.get("id", ""))))
        else:
            problems.append(_at(f"{path}.parents[{index}]", "expected {type, id}", location))
    tags = raw.get("tags") or {}
    if not isinstance(tags, Mapping) or not all(isinstance(v, str) for v in tags.values()):
        problems.append(_at(f"{path}.tags", "expected a mapping of strings", location))
        tags = {}
    attrs = raw.get("attrs") or {}
    if not isinstance(attrs, Mapping):
        problems.append(_at(f"{path}.attrs", "expected a mapping", location))
        attrs = {}
    return Entity(raw["type"], raw["id"], dict(attrs), tuple(parents), dict(tags))


def _context(
    raw: Any, action: str, problems: list[FieldError], location: str, extra: list[Entity]
) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(_at("context", "expected a mapping", location))
        return {}
    context = dict(raw)
    if isinstance(context.get("time"), str):
        try:
            context["time"] = clock(datetime.fromisoformat(context["time"]))
        except ValueError:
            problems.append(_at("context.time", "not an RFC 3339 time", location))
    if isinstance(context.get("client_ip"), str):
        context["client_ip"] = {"__extn": {"fn": "ip", "arg": context["client_ip"]}}
    if action in ("call", "call_without_approval") and isinstance(
        context.get("arguments"), Mapping
    ):
        call, arguments = call_context("offline-call", context["arguments"], now=datetime.now(UTC))
        del call["time"]  # the request's own time (or its absence) stands
        context.update(call)
        extra.append(arguments)
    return context
