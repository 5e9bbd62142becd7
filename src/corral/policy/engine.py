"""``PolicyEngine``: the authorization decision on the request path.

Configuration is compiled into an immutable ``PolicySnapshot`` (the parsed PolicySet, the
parsed base Entities and the schema handle) and swapped in with one assignment when Policy
objects or entities change; a decision reads the current snapshot once and never re-parses
policies or the base entities, only the small per-request delta (principal, resource if given
in full, tool-call arguments). Adding a delta clones the base (tens of µs for a few dozen
entities), so the snapshot remembers the handle per principal/resource delta (bounded; not for
per-call tool arguments). Deny by default: no satisfied ``permit`` is a deny.

Each snapshot also remembers its decisions (``corral.policy.decision_cache``): a request the
snapshot answered before, with the same principal and resource objects, action and the context
values its policies read, gets the same ``Decision`` object back without asking Cedar.

Errors never crash a decision and never grant: a policy that errors during evaluation does not
count as satisfied (Cedar's rule), an erroring ``forbid`` denies (it might have applied), and a
request Cedar cannot build (a context that does not match the schema, a bad entity) denies.
Every error is recorded on the ``Decision``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import cedarpy
import orjson

from corral.api.kinds.policy import CEDAR_SCHEMA
from corral.policy.compiler import CompiledPolicies, PolicyRef, compile_policies
from corral.policy.decision_cache import DecisionCache, context_attributes_read
from corral.policy.entities import Entity, EntityUid

_POLICY_IN_ERROR = re.compile(r"policy `([^`]*)`")
_SCHEMA = cedarpy.Schema.from_str(CEDAR_SCHEMA)
DELTA_CACHE_SIZE = 4096
"""Entities handles remembered per snapshot (principal + resource deltas); cleared when full."""


@dataclass(frozen=True)
class Decision:
    """The outcome of one request: allowed or not, which statements decided, what went wrong."""

    allowed: bool
    reasons: tuple[PolicyRef, ...] = ()
    """The determining statements: the satisfied permits of an allow, the forbids of a deny
    (empty when nothing permitted: denied by default)."""
    errors: tuple[str, ...] = ()

    @cached_property  # a remembered Decision is asked for this on every request
    def policies(self) -> tuple[str, ...]:
        """The Policy objects (``namespace/name``) that decided, each once, in order."""
        return tuple(dict.fromkeys(ref.policy_name for ref in self.reasons))


@dataclass(frozen=True)
class PolicySnapshot:
    """Everything a decision needs, parsed once; never mutated after it is built."""

    compiled: CompiledPolicies
    entities: cedarpy.Entities
    entity_count: int
    # A memo, not state: the same delta always yields the same handle over this snapshot.
    _deltas: dict[str, cedarpy.Entities] = field(default_factory=dict, repr=False, compare=False)
    decisions: DecisionCache = field(init=False, repr=False, compare=False)
    """The answers this snapshot gave (see ``corral.policy.decision_cache``)."""

    def __post_init__(self) -> None:
        reads = context_attributes_read(self.compiled.policy_set)
        object.__setattr__(self, "decisions", DecisionCache(reads))

    def with_delta(self, delta: Sequence[Entity], *, remember: bool) -> cedarpy.Entities:
        """The base entities plus ``delta``; raises ``ValueError`` if Cedar refuses them."""
        key = _entities_json(delta)
        handle = self._deltas.get(key)
        if handle is None:
            handle = self.entities.with_added_json_str(key)
            if remember:
                if len(self._deltas) >= DELTA_CACHE_SIZE:
                    self._deltas.clear()
                self._deltas[key] = handle
        return handle

    @property
    def problems(self) -> Mapping[str, tuple[str, ...]]:
        """Policies that did not compile and fail closed (see ``corral.policy.compiler``)."""
        return self.compiled.problems


def build_snapshot(
    policies: Iterable[Mapping[str, Any]] | CompiledPolicies,
    entities: Sequence[Entity] = (),
) -> PolicySnapshot:
    """Compile policies (Policy objects, or already compiled) and parse the base entities.

    Raises ``ValueError`` when the base entities do not match the schema: they come from
    corral's own objects, so that is a bug to surface, not a request to deny.
    """
    compiled = policies if isinstance(policies, CompiledPolicies) else compile_policies(policies)
    handle = cedarpy.Entities.from_json_str(_entities_json(entities), _SCHEMA)
    return PolicySnapshot(compiled, handle, len(entities))


class PolicyEngine:
    """Decides requests against the current snapshot; ``update`` swaps in a new one."""

    def __init__(
        self,
        policies: Iterable[Mapping[str, Any]] = (),
        entities: Sequence[Entity] = (),
    ) -> None:
        self._snapshot = build_snapshot(policies, entities)

    @property
    def snapshot(self) -> PolicySnapshot:
        return self._snapshot

    def update(
        self,
        *,
        policies: Iterable[Mapping[str, Any]] | None = None,
        entities: Sequence[Entity] | None = None,
    ) -> PolicySnapshot:
        """Build a snapshot from the new policies and/or entities (the rest carried over) and
        swap it in. Decisions in flight finish on the snapshot they started with; if building
        fails, the current snapshot stays. Call it from one task (the config watch): two
        concurrent updates would each carry over what the other replaced."""
        current = self._snapshot
        compiled = current.compiled if policies is None else compile_policies(policies)
        if entities is None:
            snapshot = PolicySnapshot(compiled, current.entities, current.entity_count)
        else:
            snapshot = build_snapshot(compiled, entities)
        self._snapshot = snapshot
        return snapshot

    def decide(
        self,
        principal: Entity,
        action: str,
        resource: Entity | EntityUid,
        context: Mapping[str, Any] | None = None,
        *,
        entities: Sequence[Entity] = (),
        cached: bool = True,
    ) -> Decision:
        """May ``principal`` do ``action`` (``invoke``, ``call``, ``apply``, ``delete``) to
        ``resource``? A resource given as a uid must be among the snapshot's entities."""
        return decide(
            self._snapshot, principal, action, resource, context, entities=entities, cached=cached
        )


def decide(
    snapshot: PolicySnapshot,
    principal: Entity,
    action: str,
    resource: Entity | EntityUid,
    context: Mapping[str, Any] | None = None,
    *,
    entities: Sequence[Entity] = (),
    cached: bool = True,
) -> Decision:
    """One decision against ``snapshot`` (what ``PolicyEngine.decide`` does).

    Remembered on the snapshot unless ``entities`` (per-call, e.g. tool arguments) are given;
    ``cached=False`` asks Cedar regardless (and remembers nothing).
    """
    if entities or not cached:
        return _decide(snapshot, principal, action, resource, context, entities)
    cache = snapshot.decisions
    key = cache.key(principal, action, resource, context)
    if key is None:
        return _decide(snapshot, principal, action, resource, context, entities)
    decision = cache.get(key, principal, resource)
    if decision is None:
        decision = _decide(snapshot, principal, action, resource, context, entities)
        cache.put(key, principal, resource, decision)
    return decision


def _decide(
    snapshot: PolicySnapshot,
    principal: Entity,
    action: str,
    resource: Entity | EntityUid,
    context: Mapping[str, Any] | None,
    entities: Sequence[Entity],
) -> Decision:
    delta = [principal, *entities]
    if isinstance(resource, Entity):
        delta.append(resource)
        resource_uid = resource.uid
    else:
        resource_uid = resource
    try:
        handle = snapshot.with_delta(delta, remember=not entities)
    except ValueError as error:
        return Decision(False, errors=(f"entities: {error}",))
    request = {
        "principal": {"type": principal.type, "id": principal.id},
        "action": {"type": "Action", "id": action},
        "resource": {"type": resource_uid[0], "id": resource_uid[1]},
        "context": dict(context or {}),
    }
    try:
        result = cedarpy.is_authorized(
            request, snapshot.compiled.policy_set, handle, schema=_SCHEMA
        )
    except (TypeError, ValueError) as error:  # e.g. a context value JSON cannot carry
        return Decision(False, errors=(f"request: {error}",))
    refs = snapshot.compiled.refs
    # Cedar reports reasons in no fixed order; sorted, equal requests give equal decisions.
    reasons = tuple(refs[pid] for pid in sorted(result.diagnostics.reasons) if pid in refs)
    errors = tuple(result.diagnostics.errors)
    if not errors:
        return Decision(result.allowed, reasons)
    errored = [refs.get(pid) for error in errors for pid in _POLICY_IN_ERROR.findall(error)]
    failed_forbids = tuple(ref for ref in errored if ref is not None and ref.effect == "forbid")
    unattributed = any(not _POLICY_IN_ERROR.search(error) for error in errors)
    if failed_forbids or unattributed or not result.allowed:
        # Fail closed: a forbid we could not evaluate might have applied.
        forbids = tuple(ref for ref in reasons if ref.effect == "forbid") + failed_forbids
        return Decision(False, forbids, errors)
    return Decision(True, reasons, errors)


def _entities_json(entities: Iterable[Entity]) -> str:
    return orjson.dumps([entity.to_json() for entity in entities]).decode()
