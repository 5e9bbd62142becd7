"""Declaring a controller: what it reconciles, which changes wake it, how many run at once.

A :class:`Controller` is a definition, checked the moment it is built (unknown kinds, a bad
name or concurrency fail here, not at 3 a.m. in a worker). ``Manager.add`` turns it into a
:class:`~corral.controlplane.loop.ReconcileLoop` fed by the manager's shared informers:

- events of ``for_kind`` enqueue the object's own key;
- events of each ``owns`` kind enqueue the key of the object's controlling owner of
  ``for_kind`` (its ``ownerReferences`` entry with ``controller: true``), so a reconciler
  hears about the children it created;
- each :class:`Watch` maps an event's object to any keys it likes (e.g. every Endpoint that
  names a changed Model);
- each :class:`~corral.controlplane.channel.KeyChannel` delivers keys sent from outside the
  store (a runtime noticing a crashed replica).

Updates map both the old and the new object, so a key that an object stopped pointing at is
reconciled too.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from corral.api.objects import Object, ObjectKey, object_key
from corral.api.registry import lookup_kind
from corral.controlplane.channel import KeyChannel
from corral.controlplane.informer import Informer, InformerEvent
from corral.controlplane.loop import EventMapper, Source
from corral.controlplane.result import Reconciler

_CONTROLLER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

KeyMapper = Callable[[Object], Iterable[ObjectKey]]


@dataclass(frozen=True)
class Watch:
    """Reconcile the keys ``map_to_keys`` returns whenever an object of ``kind`` changes."""

    kind: str
    map_to_keys: KeyMapper

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _canonical_kind(self.kind, "Watch.kind"))
        if not callable(self.map_to_keys):
            raise TypeError(f"Watch({self.kind}).map_to_keys must be callable")


@dataclass(frozen=True)
class Controller:
    name: str
    for_kind: str
    reconciler: Reconciler
    owns: tuple[str, ...] = ()
    watches: tuple[Watch, ...] = ()
    max_concurrent_reconciles: int = 1
    channels: tuple[KeyChannel, ...] = ()
    """Keys pushed from outside the store (see :class:`KeyChannel`)."""
    on_stop: Callable[[], Awaitable[None]] | None = None
    """Awaited whenever the controller stops: leadership lost or shutdown (release resources
    that only the leader may hold, e.g. running model replicas)."""
    needs_leader_election: bool = True

    def __post_init__(self) -> None:
        where = f"controller {self.name!r}"
        if not isinstance(self.name, str) or not _CONTROLLER_NAME.match(self.name):
            raise ValueError(
                f"{where}: name must be lower-case letters, digits and '-' (DNS-1123 label)"
            )
        object.__setattr__(self, "for_kind", _canonical_kind(self.for_kind, f"{where} for_kind"))
        owns = (self.owns,) if isinstance(self.owns, str) else tuple(self.owns)
        object.__setattr__(
            self, "owns", tuple(_canonical_kind(kind, f"{where} owns") for kind in owns)
        )
        watches = tuple(self.watches)
        for watch in watches:
            if not isinstance(watch, Watch):
                raise TypeError(f"{where}: watches must be Watch(kind, map_to_keys) entries")
        object.__setattr__(self, "watches", watches)
        channels = tuple(self.channels)
        if not all(isinstance(channel, KeyChannel) for channel in channels):
            raise TypeError(f"{where}: channels must be KeyChannel instances")
        object.__setattr__(self, "channels", channels)
        if self.on_stop is not None and not callable(self.on_stop):
            raise TypeError(f"{where}: on_stop must be an async function of no arguments")
        if not callable(self.reconciler):
            raise TypeError(f"{where}: reconciler must be an async function of the key")
        concurrency = self.max_concurrent_reconciles
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"{where}: max_concurrent_reconciles must be an int >= 1")

    @property
    def kinds(self) -> tuple[str, ...]:
        """Every kind whose informer this controller reads, without repeats."""
        ordered = [self.for_kind, *self.owns, *(watch.kind for watch in self.watches)]
        return tuple(dict.fromkeys(ordered))

    def sources(self, informer_for: Callable[[str], Informer]) -> list[Source]:
        sources = [Source(informer_for(self.for_kind), _own_key)]
        sources += [
            Source(informer_for(kind), _controller_owner_keys(self.for_kind)) for kind in self.owns
        ]
        sources += [
            Source(informer_for(watch.kind), _mapped_keys(watch.map_to_keys))
            for watch in self.watches
        ]
        return sources


def owner_keys(obj: Object, owner_kind: str, *, controller_only: bool = False) -> list[ObjectKey]:
    """Keys of ``obj``'s owners of ``owner_kind`` (only its controller when asked)."""
    info = lookup_kind(owner_kind)
    namespaced = info.namespaced if info is not None else True
    namespace = str((obj.get("metadata") or {}).get("namespace") or "") if namespaced else ""
    keys = []
    for reference in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if reference.get("kind") != owner_kind or not reference.get("name"):
            continue
        if controller_only and not reference.get("controller"):
            continue
        keys.append(ObjectKey(owner_kind, namespace, str(reference["name"])))
    return keys


def _own_key(event: InformerEvent) -> list[ObjectKey]:
    return [object_key(event.object)]


def _controller_owner_keys(owner_kind: str) -> EventMapper:
    def map_event(event: InformerEvent) -> list[ObjectKey]:
        return _both(event, lambda obj: owner_keys(obj, owner_kind, controller_only=True))

    return map_event


def _mapped_keys(map_to_keys: KeyMapper) -> EventMapper:
    def map_event(event: InformerEvent) -> list[ObjectKey]:
        return _both(event, map_to_keys)

    return map_event


def _both(event: InformerEvent, map_object: KeyMapper) -> list[ObjectKey]:
    keys = list(map_object(event.object))
    if event.old_object is not None:
        keys += [key for key in map_object(event.old_object) if key not in keys]
    return keys


def _canonical_kind(name: object, where: str) -> str:
    info = lookup_kind(name) if isinstance(name, str) and name else None
    if info is None:
        raise ValueError(f"{where}: unknown kind {name!r} (not in the kind registry)")
    return info.kind
