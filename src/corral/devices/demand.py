"""What a ResourceClaim asks for, read once from its spec into plain frozen values.

The scheduler's first step: the claim controller (and the benchmarks) turn a stored
``ResourceClaim`` object into a :class:`Demand`, and everything after it (the allocator, the
quota book, the queue, preemption) works on that value, never on the raw dict. Field names and
defaults follow Kubernetes ``resource.k8s.io/v1``:

- a request is either ``exactly`` one device choice or ``firstAvailable``: alternatives tried in
  order (the first that can be allocated wins; its result names ``request/subrequest``);
- ``allocationMode`` ``ExactCount`` takes ``count`` devices (default 1), ``All`` every matching
  device on the chosen node;
- ``capacity.requests`` asks for part of a shareable device (``allowMultipleAllocations``),
  e.g. ``compute: 460m`` of a GPU; on a device that cannot be shared it only says the device
  must have at least that much, and the whole device is taken;
- a constraint's ``matchAttribute`` makes every device of the named requests (all, when the list
  is empty) carry one value of that attribute, e.g. one NVLink domain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from corral.api.quantity import QuantityError, parse_quantity

DEFAULT_QUEUE = "default"
QUEUE_LABEL = "corral.dev/queue"
MAX_COUNT = 1024


class DemandError(ValueError):
    """A claim spec the scheduler cannot read; the message names the field."""


@dataclass(frozen=True, slots=True)
class Choice:
    """One way to satisfy a request: a device class, selectors, how many, how much of each."""

    result_name: str
    device_class: str
    selectors: tuple[str, ...]
    all_devices: bool
    count: int
    capacity: tuple[tuple[str, Fraction], ...]

    @property
    def signature(self) -> tuple[str, tuple[str, ...]]:
        """What decides which devices match: the class and the claim's own selectors."""
        return (self.device_class, self.selectors)


@dataclass(frozen=True, slots=True)
class Request:
    name: str
    choices: tuple[Choice, ...]


@dataclass(frozen=True, slots=True)
class Constraint:
    requests: tuple[str, ...]
    attribute: str


@dataclass(frozen=True, slots=True)
class Demand:
    """A claim as the scheduler sees it. ``key`` is ``namespace/name``."""

    key: str
    requests: tuple[Request, ...]
    constraints: tuple[Constraint, ...] = ()
    priority: int = 0
    queue: str = DEFAULT_QUEUE
    created: str = ""

    def constrained(self, request: str) -> tuple[Constraint, ...]:
        return tuple(c for c in self.constraints if not c.requests or request in c.requests)


def demand_from_claim(
    claim: Mapping[str, Any], namespace_labels: Mapping[str, str] | None = None
) -> Demand:
    """The :class:`Demand` of a stored ResourceClaim object; DemandError names a bad field.

    The queue is ``spec.queue``, else the ``corral.dev/queue`` label of the claim's Namespace
    (``namespace_labels``), else of the claim itself, else ``default``.
    """
    meta = claim.get("metadata") or {}
    key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    spec = claim.get("spec") or {}
    devices = spec.get("devices") or {}
    raw_requests = devices.get("requests") or []
    if not raw_requests:
        raise DemandError("spec.devices.requests: a claim needs at least one request")
    requests = tuple(
        _request(raw, f"spec.devices.requests[{i}]") for i, raw in enumerate(raw_requests)
    )
    names = [r.name for r in requests]
    if len(set(names)) != len(names):
        raise DemandError("spec.devices.requests: request names must be unique")
    constraints = []
    for i, raw in enumerate(devices.get("constraints") or []):
        where = f"spec.devices.constraints[{i}]"
        attribute = raw.get("matchAttribute")
        if not isinstance(attribute, str) or not attribute:
            raise DemandError(f"{where}.matchAttribute: name an attribute")
        listed = tuple(raw.get("requests") or ())
        unknown = [n for n in listed if n not in names]
        if unknown:
            raise DemandError(f"{where}.requests: no request named {unknown[0]!r}")
        constraints.append(Constraint(listed, attribute))
    labels = meta.get("labels") or {}
    queue = (
        spec.get("queue")
        or (namespace_labels or {}).get(QUEUE_LABEL)
        or labels.get(QUEUE_LABEL)
        or DEFAULT_QUEUE
    )
    priority = spec.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise DemandError("spec.priority: must be an integer")
    return Demand(
        key=key,
        requests=requests,
        constraints=tuple(constraints),
        priority=priority,
        queue=str(queue),
        created=str(meta.get("creationTimestamp") or ""),
    )


def _request(raw: Mapping[str, Any], where: str) -> Request:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise DemandError(f"{where}.name: every request needs a name")
    exactly, first = raw.get("exactly"), raw.get("firstAvailable")
    if (exactly is None) == (first is None):
        raise DemandError(f"{where}: set exactly one of exactly and firstAvailable")
    if exactly is not None:
        return Request(name, (_choice(exactly, name, f"{where}.exactly"),))
    if not first:
        raise DemandError(f"{where}.firstAvailable: list at least one alternative")
    choices = []
    for j, sub in enumerate(first):
        sub_name = sub.get("name")
        if not isinstance(sub_name, str) or not sub_name:
            raise DemandError(f"{where}.firstAvailable[{j}].name: every alternative needs a name")
        choices.append(_choice(sub, f"{name}/{sub_name}", f"{where}.firstAvailable[{j}]"))
    return Request(name, tuple(choices))


def _choice(raw: Mapping[str, Any], result_name: str, where: str) -> Choice:
    device_class = raw.get("deviceClassName")
    if not isinstance(device_class, str) or not device_class:
        raise DemandError(f"{where}.deviceClassName: name a DeviceClass")
    selectors = []
    for k, selector in enumerate(raw.get("selectors") or []):
        expression = (selector.get("cel") or {}).get("expression")
        if not isinstance(expression, str) or not expression.strip():
            raise DemandError(f"{where}.selectors[{k}].cel.expression: must be a CEL expression")
        selectors.append(expression)
    mode = raw.get("allocationMode") or "ExactCount"
    if mode not in ("ExactCount", "All"):
        raise DemandError(f"{where}.allocationMode: must be ExactCount or All (got {mode!r})")
    count = raw.get("count", 1)
    if mode == "ExactCount" and (not isinstance(count, int) or not 1 <= count <= MAX_COUNT):
        raise DemandError(f"{where}.count: must be 1..{MAX_COUNT} (got {count!r})")
    capacity = []
    for cap_name, value in sorted(((raw.get("capacity") or {}).get("requests") or {}).items()):
        try:
            amount = parse_quantity(value)
        except QuantityError as exc:
            raise DemandError(f"{where}.capacity.requests.{cap_name}: {exc}") from None
        if amount <= 0:
            raise DemandError(f"{where}.capacity.requests.{cap_name}: must be > 0")
        capacity.append((str(cap_name), amount))
    return Choice(
        result_name=result_name,
        device_class=device_class,
        selectors=tuple(selectors),
        all_devices=mode == "All",
        count=1 if mode == "All" else int(count),
        capacity=tuple(capacity),
    )
