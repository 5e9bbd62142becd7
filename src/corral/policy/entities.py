"""Cedar entities and request contexts in corral's vocabulary (see ``CEDAR_SCHEMA``).

The gateway and the API server describe who is asking, about what, with these helpers; the
engine turns them into Cedar JSON. Stored objects become resource entities (labels → tags, the
namespace → parent), principals carry their team as a parent and its labels as tags, and
contexts get the shapes the schema declares (``time`` as hour and weekday in UTC, ``client_ip``
as an ``ipaddr``, tool arguments as the tags of a per-call ``Arguments`` entity).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

_EMPTY: Mapping[str, Any] = MappingProxyType({})

EntityUid = tuple[str, str]
"""``(type, id)``, e.g. ``("Endpoint", "default/chat")``."""

PrincipalKind = Literal["user", "team-key", "workload"]
_PRINCIPAL_TYPES: dict[str, str] = {"user": "User", "team-key": "ApiKey", "workload": "Agent"}


@dataclass(frozen=True)
class Entity:
    """One Cedar entity: its uid, attributes (Cedar JSON values), parents and tags."""

    type: str
    id: str
    attrs: Mapping[str, Any] = field(default_factory=dict)
    parents: tuple[EntityUid, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def uid(self) -> EntityUid:
        return (self.type, self.id)

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": {"type": self.type, "id": self.id},
            "attrs": dict(self.attrs),
            "parents": [{"type": kind, "id": id_} for kind, id_ in self.parents],
            "tags": dict(self.tags),
        }


def principal_entity(
    kind: PrincipalKind,
    id: str,
    *,
    team: str | None = None,
    namespace: str | None = None,
    labels: Mapping[str, str] = _EMPTY,
    act: tuple[str, ...] = (),
) -> Entity:
    """The principal for a caller (the fields of ``corral.identity.Principal``).

    A team-key is an ``ApiKey`` (needs team and namespace), a workload an ``Agent`` (its SPIFFE
    id; needs a namespace), anyone else a ``User``. With a team and a namespace, the parent
    ``Team::"<namespace>/<team>"`` lets policies say ``principal in Team::"default/admins"``
    (a user from a token has no namespace: match ``principal.team`` instead); an agent's
    namespace is a parent too (``principal in Namespace::"prod"``).
    """
    cedar_type = _PRINCIPAL_TYPES.get(kind)
    if cedar_type is None:
        raise ValueError(f"principal kind must be one of {sorted(_PRINCIPAL_TYPES)}, got {kind!r}")
    attrs: dict[str, Any] = {"name": id, "act": list(act)}
    if cedar_type != "User":
        if not namespace:
            raise ValueError(f"a {kind} principal needs a namespace")
        attrs["namespace"] = namespace
        attrs["name"] = id.rsplit("/", 1)[-1]
    if team is not None:
        attrs["team"] = team
    elif cedar_type == "ApiKey":
        raise ValueError("a team-key principal needs a team")
    parents: list[EntityUid] = []
    if team is not None and namespace:
        parents.append(("Team", f"{namespace}/{team}"))
    if cedar_type == "Agent" and namespace:
        parents.append(("Namespace", namespace))
    return Entity(cedar_type, id, attrs, tuple(parents), dict(labels))


def team_entity(namespace: str, name: str, labels: Mapping[str, str] = _EMPTY) -> Entity:
    return Entity(
        "Team",
        f"{namespace}/{name}",
        {"name": name, "namespace": namespace},
        (("Namespace", namespace),),
        dict(labels),
    )


def object_entity(obj: Mapping[str, Any]) -> Entity:
    """A stored object as the resource of a decision.

    Endpoints, Models and Tools are their own entity types (``invoke`` and ``call`` act on
    them); any other kind is a ``Resource`` with its kind as an attribute (for apply/delete).
    A Tool's ``spec.risk`` becomes its ``risk`` attribute ("unknown" when absent).
    """
    kind = str(obj.get("kind", ""))
    meta = obj.get("metadata") or {}
    name, namespace = str(meta.get("name", "")), str(meta.get("namespace", ""))
    if not kind or not name:
        raise ValueError("an object needs a kind and metadata.name to be a policy resource")
    attrs: dict[str, Any] = {"name": name, "namespace": namespace}
    cedar_type = kind if kind in ("Endpoint", "Model", "Tool") else "Resource"
    if cedar_type == "Tool":
        attrs["risk"] = str((obj.get("spec") or {}).get("risk", "unknown"))
    elif cedar_type == "Resource":
        attrs["kind"] = kind
    entity_id = f"{namespace}/{name}" if namespace else name
    if cedar_type == "Resource":
        entity_id = f"{kind}/{entity_id}"
    parents: tuple[EntityUid, ...] = (("Namespace", namespace),) if namespace else ()
    return Entity(cedar_type, entity_id, attrs, parents, dict(meta.get("labels") or {}))


def clock(now: datetime) -> dict[str, int]:
    """The schema's ``Clock``: hour (0-23) and ISO weekday (1 = Monday … 7 = Sunday), in UTC."""
    utc = now if now.tzinfo is UTC else now.astimezone(UTC)
    return {"hour": utc.hour, "weekday": utc.isoweekday()}


def invoke_context(
    *,
    model: str,
    estimated_tokens: int,
    now: datetime,
    client_ip: str | None = None,
    stream: bool | None = None,
) -> dict[str, Any]:
    """The context of ``Action::"invoke"`` on an Endpoint."""
    context: dict[str, Any] = {
        "model": model,
        "estimated_tokens": estimated_tokens,
        "time": clock(now),
    }
    if client_ip is not None:
        context["client_ip"] = {"__extn": {"fn": "ip", "arg": client_ip}}
    if stream is not None:
        context["stream"] = stream
    return context


def call_context(
    call_id: str,
    arguments: Mapping[str, Any],
    *,
    now: datetime,
    client_ip: str | None = None,
) -> tuple[dict[str, Any], Entity]:
    """The context of ``Action::"call"`` on a Tool, and the ``Arguments`` entity it refers to.

    Cedar records are closed, so a tool's free-form arguments travel as the tags of an entity
    made for this call (``context.arguments.getTag("path") like "/tmp/*"``): strings as they
    are, other values as JSON text. Pass the entity to ``decide(..., entities=[...])``.
    """
    tags = {
        name: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        for name, value in arguments.items()
    }
    entity = Entity("Arguments", call_id, tags=tags)
    context: dict[str, Any] = {
        "arguments": {"__entity": {"type": "Arguments", "id": call_id}},
        "argument_names": sorted(arguments),
        "time": clock(now),
    }
    if client_ip is not None:
        context["client_ip"] = {"__extn": {"fn": "ip", "arg": client_ip}}
    return context, entity
