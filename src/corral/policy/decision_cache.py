"""The decision cache: identical requests against one snapshot skip Cedar.

A decision is a pure function of the snapshot (policies, base entities, schema), the principal
entity, the action, the resource, and the context; the gateway asks the same question over and
over (a few keys × a few Endpoints), so each ``PolicySnapshot`` keeps the answers it gave.
Living on the immutable snapshot is what makes policy and entity changes safe: a new snapshot
starts empty and the old answers go with the old snapshot.

The key, per snapshot:

- the principal ``Entity`` by identity (the access feed builds one per caller per key
  snapshot, so a caller whose team or labels changed arrives as a new object); the entry
  holds the object, so its ``id`` cannot be reused by another while the entry lives;
- the action;
- the resource: its uid when given as a uid (its tags then come from the snapshot's own
  entities), else the ``Entity`` by identity like the principal;
- the context, attribute by attribute in the order given: the exact value (type-tagged, so
  ``1``, ``1.0`` and ``True`` differ) of every attribute a policy reads, and for the others only
  what decides whether Cedar accepts the request at all: an ``int`` within Cedar's 64-bit
  ``Long`` range becomes ``int``, a ``bool`` becomes ``bool``, a record recurses, anything else
  (strings, which the schema may parse as an ``ipaddr``; extension values; sets; other numbers)
  stays exact. So ``estimated_tokens`` varying per request costs nothing unless a policy reads
  it. The attributes read are found in the compiled policies (``context.x``, ``context has x``,
  ``context["x"]``); a policy that uses ``context`` any other way (or policies the typed node
  view cannot show) make every attribute exact.

Only decisions without errors are kept: Cedar's error messages quote the whole context, which
the key deliberately does not. Requests with per-call entities (tool arguments) and contexts
holding values the key cannot represent (non-string record keys, objects other than JSON
scalars, lists and dicts) are decided afresh each time.

Bounded at ``DECISION_CACHE_SIZE`` entries, cleared when full (O(1), no bookkeeping on a hit).
Entities are treated as values: an ``Entity`` passed to a decision must not be mutated
afterwards (none in corral is). Concurrency: a plain dict whose single ``get``/set/``clear``
steps are atomic under the GIL; the gateway uses it from its event loop thread, and a race
between threads can only lose entries, never mix answers (each key has one answer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any, Final

import cedarpy

if TYPE_CHECKING:
    from corral.policy.engine import Decision
    from corral.policy.entities import Entity, EntityUid

DECISION_CACHE_SIZE = 4096
"""Decisions remembered per snapshot; the cache is cleared when it is full."""

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_LEAF_TYPES = (str, int, bool, type(None))


class _Uncacheable(Exception):
    """A context value the key cannot represent exactly; decide without the cache."""


def context_attributes_read(policy_set: cedarpy.PolicySet) -> frozenset[str] | None:
    """The top-level ``context`` attributes the policies can read, or None for all of them.

    None when any policy uses ``context`` other than through an attribute access or ``has``
    test, or when the policy set cannot be shown as typed nodes (newer Cedar syntax).
    """
    try:
        nodes = policy_set.to_pst()
    except ValueError:
        return None
    names: set[str] = set()
    return frozenset(names) if _collect(nodes, names) else None


def _collect(node: Any, names: set[str]) -> bool:
    """Add the context attributes ``node`` reads to ``names``; False if it reads all."""
    if isinstance(node, _LEAF_TYPES):
        return True
    if isinstance(node, cedarpy.pst.Var):
        return node.name != "context"  # ``context`` on its own: the whole record
    if isinstance(node, (cedarpy.pst.GetAttr, cedarpy.pst.HasAttr)):
        base = node.base
        if isinstance(base, cedarpy.pst.Var) and base.name == "context":
            names.add(node.attr if isinstance(node, cedarpy.pst.GetAttr) else node.attrs[0])
            return True
        return _collect(base, names)
    if isinstance(node, Mapping):
        return all(_collect(value, names) for value in node.values())
    if isinstance(node, (tuple, list)):
        return all(_collect(item, names) for item in node)
    if dataclasses.is_dataclass(node):
        return all(_collect(getattr(node, f.name), names) for f in dataclasses.fields(node))
    return False  # a node kind this walk does not know: assume it reads everything


class DecisionCache:
    """Decisions of one snapshot by (principal, action, resource, context) key; see module."""

    __slots__ = ("_entries", "_reads", "capacity")

    def __init__(self, reads: frozenset[str] | None, capacity: int = DECISION_CACHE_SIZE) -> None:
        self._reads: Final = reads
        self._entries: dict[Hashable, tuple[Entity, Entity | EntityUid, Decision]] = {}
        self.capacity = capacity

    @property
    def reads(self) -> frozenset[str] | None:
        """The context attributes keyed by exact value (None: all of them)."""
        return self._reads

    def __len__(self) -> int:
        return len(self._entries)

    def key(
        self,
        principal: Entity,
        action: str,
        resource: Entity | EntityUid,
        context: Mapping[str, Any] | None,
    ) -> Hashable | None:
        """The cache key of a request, or None when it must not be cached."""
        try:
            context_key = _context_key(context, self._reads) if context else ()
        except _Uncacheable:
            return None
        if isinstance(resource, tuple):
            if not all(type(part) is str for part in resource):
                return None  # not a uid: let Cedar refuse it
            resource_key: Hashable = resource
        else:
            resource_key = id(resource)
        return (id(principal), action, resource_key, context_key)

    def get(
        self, key: Hashable, principal: Entity, resource: Entity | EntityUid
    ) -> Decision | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] is not principal:
            return None
        if not isinstance(resource, tuple) and entry[1] is not resource:
            return None
        return entry[2]

    def put(
        self,
        key: Hashable,
        principal: Entity,
        resource: Entity | EntityUid,
        decision: Decision,
    ) -> None:
        if decision.errors:
            return  # error texts quote the whole context; see the module docstring
        if len(self._entries) >= self.capacity:
            self._entries.clear()
        self._entries[key] = (principal, resource, decision)


def _context_key(context: Mapping[str, Any], reads: frozenset[str] | None) -> Hashable:
    parts = []
    for name, value in context.items():
        if type(name) is not str:
            raise _Uncacheable
        exact = reads is None or name in reads
        parts.append((name, _exact(value) if exact else _shape(value)))
    return tuple(parts)


def _exact(value: Any) -> Hashable:
    """``value`` as a hashable that equals another's only when the values are the same JSON."""
    kind = type(value)
    if kind is str or value is None:
        return value  # type: ignore[no-any-return]
    if kind is int or kind is bool or kind is float:
        return (kind, value)
    if kind is dict:
        return (dict, tuple((_key(name), _exact(item)) for name, item in value.items()))
    if kind is list or kind is tuple:
        return (list, tuple(_exact(item) for item in value))
    raise _Uncacheable


def _shape(value: Any) -> Hashable:
    """What of an unread attribute decides whether Cedar accepts it (see the module)."""
    kind = type(value)
    if kind is int and _LONG_MIN <= value <= _LONG_MAX:
        return int
    if kind is bool:
        return bool
    if kind is dict and "__extn" not in value and "__entity" not in value:
        return (dict, tuple((_key(name), _shape(item)) for name, item in value.items()))
    return _exact(value)


def _key(name: object) -> str:
    if type(name) is not str:
        raise _Uncacheable
    return name
