"""Model-aware sizing: what one Endpoint replica asks of the device fleet, as a ResourceClaim.

First step of serving on devices (DESIGN.md §6). The Endpoint controller (and ``corral render
kubernetes``) measure a replica — weights + KV cache + overhead, from the Model's GGUF header
facts through :mod:`corral.models.sizing` — and hand the bytes here, with the Endpoint's
``spec.devices``. This module turns them into the replica's ``ResourceClaim`` (a capacity
request of ``memory``, and ``cores`` for CPU threads, on one device of the class), and refuses
up front, with the numbers, a replica that no device of its class could ever hold: such a claim
would wait forever, and the user should hear why now.

Pure: no store, no model files. Node and DeviceClass objects come in as plain dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from corral.api.objects import API_VERSION
from corral.api.quantity import QuantityError, parse_quantity

MEMORY = "memory"
"""Capacity name of a device's memory (bytes), as GPU and CPU drivers publish it."""
CORES = "cores"
"""Capacity name of a CPU device's cores; the allocated share becomes the thread count."""

MIB = 1024 * 1024

CLAIM_REQUEST = "replica"
"""The one request name in a replica's claim (``resources.claims`` refers to the claim)."""

ENDPOINT_LABEL = "corral.dev/endpoint"
REPLICA_LABEL = "corral.dev/replica"

DeviceMatcher = Callable[[Mapping[str, Any]], bool]
SelectorCompiler = Callable[[str], DeviceMatcher]


class SizingError(ValueError):
    """A replica cannot be sized (the Model's facts are missing, a quantity is malformed)."""


@dataclass(frozen=True)
class Footprint:
    """Bytes one replica holds: weights + KV cache + runtime overhead (0 parts when explicit)."""

    weights: int
    kv_cache: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead

    def describe(self) -> str:
        if not (self.weights or self.kv_cache):
            return format_bytes(self.total)
        return (
            f"{format_bytes(self.total)} (weights {format_bytes(self.weights)} + KV cache "
            f"{format_bytes(self.kv_cache)} + overhead {format_bytes(self.overhead)})"
        )


@dataclass(frozen=True)
class ReplicaNeeds:
    """What one replica asks for: a device of ``class_name`` with this much memory and cores."""

    class_name: str
    memory: int | None
    cores: int | None
    footprint: Footprint | None = None

    def capacity_requests(self) -> dict[str, str]:
        requests: dict[str, str] = {}
        if self.memory is not None:
            requests[MEMORY] = memory_quantity(self.memory)
        if self.cores is not None:
            requests[CORES] = str(self.cores)
        return requests


def memory_quantity(value: int) -> str:
    """Bytes as a quantity rounded up to whole MiB (``9280Mi``): readable, and never less."""
    return f"{-(-value // MIB)}Mi"


def format_bytes(value: int | Fraction) -> str:
    """``41.2 GiB``-style text for messages (binary units, one decimal)."""
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(amount) < 1024 or unit == "GiB":
            break
        amount /= 1024
    return f"{int(amount)} B" if unit == "B" else f"{amount:.1f} {unit}"


def replica_needs(devices: Mapping[str, Any], footprint: Footprint | None) -> ReplicaNeeds:
    """The request for one replica from the Endpoint's ``spec.devices`` and the measured bytes.

    ``memory`` (a quantity) given in the spec wins over the measurement; ``auto`` (default true)
    asks for the measured footprint; with neither, only a device of the class is asked for.
    """
    class_name = str(devices.get("className") or "")
    if not class_name:
        raise SizingError("spec.devices.className: name a DeviceClass")
    explicit = devices.get("memory")
    memory: int | None = None
    if explicit is not None:
        try:
            amount = parse_quantity(explicit)
        except QuantityError as exc:
            raise SizingError(f"spec.devices.memory: {exc}") from None
        memory = int(-(-amount // 1))  # round up: a fraction of a byte is a byte
        footprint = Footprint(0, 0, memory)
    elif devices.get("auto", True):
        if footprint is None:
            raise SizingError(
                "spec.devices.auto: the Model's size is unknown (no GGUF header facts in its "
                "status); set spec.devices.memory"
            )
        memory = footprint.total
    cores = devices.get("cores")
    return ReplicaNeeds(
        class_name=class_name,
        memory=memory,
        cores=int(cores) if cores is not None else None,
        footprint=footprint if memory is not None else None,
    )


def replica_claim(
    needs: ReplicaNeeds,
    *,
    namespace: str,
    name: str,
    endpoint: str,
    replica: str,
    owner: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``ResourceClaim`` object for one replica (owned by the Endpoint when ``owner``)."""
    exactly: dict[str, Any] = {"deviceClassName": needs.class_name, "count": 1}
    requests = needs.capacity_requests()
    if requests:
        exactly["capacity"] = {"requests": requests}
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {ENDPOINT_LABEL: endpoint, REPLICA_LABEL: replica},
    }
    if owner is not None:
        meta = owner.get("metadata") or {}
        metadata["ownerReferences"] = [
            {
                "apiVersion": owner.get("apiVersion", API_VERSION),
                "kind": owner.get("kind", "Endpoint"),
                "name": meta.get("name"),
                "uid": meta.get("uid"),
                "controller": True,
            }
        ]
    return {
        "apiVersion": API_VERSION,
        "kind": "ResourceClaim",
        "metadata": metadata,
        "spec": {"devices": {"requests": [{"name": CLAIM_REQUEST, "exactly": exactly}]}},
    }


def class_devices(
    nodes: Iterable[Mapping[str, Any]],
    device_class: Mapping[str, Any],
    compile: SelectorCompiler,
) -> list[tuple[str, Mapping[str, Any]]]:
    """(node name, device) of every device the class's selectors accept, healthy or not.

    Health and taints change; this answers "could it ever fit", so they are not looked at.
    """
    selectors = ((device_class.get("spec") or {}).get("selectors")) or []
    expressions = [str((s.get("cel") or {}).get("expression") or "true") for s in selectors]
    try:
        matchers = [compile(expression) for expression in expressions]
    except ValueError as exc:  # checked at apply time; a class stored before that check
        name = (device_class.get("metadata") or {}).get("name")
        raise SizingError(f"DeviceClass {name}: {exc}") from None
    found: list[tuple[str, Mapping[str, Any]]] = []
    for node in nodes:
        node_name = str((node.get("metadata") or {}).get("name") or "")
        for device in (node.get("spec") or {}).get("devices") or []:
            if all(_matches(matcher, device) for matcher in matchers):
                found.append((node_name, device))
    return found


def never_fits(
    needs: ReplicaNeeds,
    device_class: Mapping[str, Any] | None,
    nodes: Iterable[Mapping[str, Any]],
    compile: SelectorCompiler,
) -> str:
    """Why no device of the class could ever hold the replica, or "" when one could.

    Compared against the largest capacity any device of the class has, free or not.
    """
    if device_class is None:
        return f"DeviceClass {needs.class_name!r} does not exist"
    try:
        devices = class_devices(nodes, device_class, compile)
    except SizingError as exc:
        return str(exc)
    if not devices:
        return f"no Node has a device of class {needs.class_name!r}"
    for capacity, wanted in ((MEMORY, needs.memory), (CORES, needs.cores)):
        if wanted is None:
            continue
        best: tuple[Fraction, str] | None = None
        for node_name, device in devices:
            have = _capacity(device, capacity)
            if have is not None and (best is None or have > best[0]):
                best = (have, f"{node_name}/{device.get('name')}")
        if best is None:
            return f"no device of class {needs.class_name!r} publishes {capacity} capacity"
        if best[0] < wanted:
            if capacity == MEMORY:
                described = needs.footprint.describe() if needs.footprint else str(wanted)
                return (
                    f"a replica needs {described}; the largest device of class "
                    f"{needs.class_name!r} has {format_bytes(best[0])} ({best[1]})"
                )
            return (
                f"a replica needs {wanted} cores; the largest device of class "
                f"{needs.class_name!r} has {best[0]} ({best[1]})"
            )
    return ""


def _capacity(device: Mapping[str, Any], name: str) -> Fraction | None:
    raw = (device.get("capacity") or {}).get(name)
    value = raw.get("value") if isinstance(raw, Mapping) else raw
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        return parse_quantity(value)
    except QuantityError:
        return None  # the claim controller reports a malformed inventory; here it cannot fit


def _matches(matcher: DeviceMatcher, device: Mapping[str, Any]) -> bool:
    try:
        return matcher(device)
    except Exception:  # a runtime CEL error is "no match", as the allocator treats it
        return False
