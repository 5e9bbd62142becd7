"""The allocator's live picture of the fleet: every device, what is free on it, who holds it.

The claim controller feeds it Node objects and committed allocations; the allocator reads it.
Each node is a row and each of its devices a column of numpy arrays (``usable``, ``unused``,
free amount per capacity name, free GPU milli for the fragmentation score), so filtering all
nodes for a request is a few array operations instead of a loop over 40,000 devices. The exact
per-device amounts (``Fraction``) live on :class:`Slot` objects and are the only thing an
allocation is checked against; the float arrays are a filter that may say "maybe" but never
misses a fit.

``generation[row]`` moves whenever a row changes (node replaced, allocation added or
released), so caches (selector matches, scores) recompute just the rows that moved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import NDArray

from corral.api.quantity import QuantityError, parse_quantity

MILLI = 1000
BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class InventoryError(ValueError):
    """A Node object the index cannot read; the message names the node and field."""


@dataclass(frozen=True, slots=True)
class Taken:
    """What one allocation holds of one device: the whole device, or amounts of it."""

    device: str
    request: str
    consumed: tuple[tuple[str, Fraction], ...]
    exclusive: bool


@dataclass(frozen=True, slots=True)
class Held:
    """A committed allocation: the claim holds these devices on this node."""

    node: str
    taken: tuple[Taken, ...]


@dataclass(slots=True, eq=False)
class Slot:
    """One device on one node, with its exact free amounts."""

    name: str
    driver: str
    raw: Mapping[str, Any]
    capacity: dict[str, Fraction]
    free: dict[str, Fraction]
    shared: bool
    consumes: tuple[tuple[str, tuple[tuple[str, Fraction], ...]], ...]
    schedulable: bool
    evicting: bool = False
    holders: dict[str, Taken] = field(default_factory=dict)

    def attribute(self, qualified: str) -> object:
        """The typed value of an attribute named ``domain/name`` or short, or None."""
        attributes = self.raw.get("attributes") or {}
        value = attributes.get(qualified)
        if value is None and "/" in qualified:
            domain, _, short = qualified.rpartition("/")
            if domain == self.driver:
                value = attributes.get(short)
        if isinstance(value, Mapping):
            for kind in ("string", "int", "bool", "version"):
                if kind in value:
                    return (kind, value[kind])
        return None


@dataclass(slots=True, eq=False)
class NodeRow:
    name: str
    row: int
    slots: list[Slot]
    counters: dict[str, dict[str, Fraction]]
    schedulable: bool
    evicting: bool = False
    source: Mapping[str, Any] = field(default_factory=dict)
    column_of: dict[str, int] = field(default_factory=dict)

    def pristine(self) -> NodeRow:
        """The node as if nothing were allocated on it (for "could it ever fit" checks)."""
        return _read_node(self.source)

    def __post_init__(self) -> None:
        self.column_of = {slot.name: i for i, slot in enumerate(self.slots)}


class FleetIndex:
    """Nodes, devices and allocations; rows never move, a deleted node's row is emptied."""

    def __init__(self, width: int = 8) -> None:
        self.width = max(width, 1)
        self.rows: list[NodeRow | None] = []
        self.by_name: dict[str, int] = {}
        self.held: dict[str, Held] = {}
        self.generation: IntArray = np.zeros(0, dtype=np.int64)
        self.spec_generation: IntArray = np.zeros(0, dtype=np.int64)
        self.present: BoolArray = np.zeros((0, self.width), dtype=bool)
        self.usable: BoolArray = np.zeros((0, self.width), dtype=bool)
        self.unused: BoolArray = np.zeros((0, self.width), dtype=bool)
        self.shared: BoolArray = np.zeros((0, self.width), dtype=bool)
        self.free_milli: IntArray = np.zeros((0, self.width), dtype=np.int64)
        self.cap_free: dict[str, FloatArray] = {}
        self.cap_total: dict[str, FloatArray] = {}
        self.cap_typical: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.rows)

    # -- nodes ------------------------------------------------------------------------------

    def put_node(self, node: Mapping[str, Any]) -> list[str]:
        """Add or replace a Node object; returns claims whose devices it no longer offers."""
        built = _read_node(node)
        row = self.by_name.get(built.name)
        if row is None:
            row = self._new_row(len(built.slots))
            self.by_name[built.name] = row
        elif len(built.slots) > self.width:
            self._widen(len(built.slots))
        built.row = row
        self.rows[row] = built
        self.spec_generation[row] += 1
        lost = []
        # Allocations survive a node update when the new version still holds them, in the
        # order they were made; a NoExecute taint evicts what sits under it.
        for claim, held in list(self.held.items()):
            if held.node != built.name:
                continue
            problem = fits_exactly(built, held.taken) or _evicted(built, held.taken)
            if problem:
                lost.append(claim)
                del self.held[claim]
            else:
                for i, taken in enumerate(held.taken):
                    _take(built, f"{claim}\0{i}", taken)
        self._refresh_row(row)
        return lost

    def remove_node(self, name: str) -> list[str]:
        """Forget a node; returns the claims that had devices on it (now released)."""
        row = self.by_name.pop(name, None)
        if row is None:
            return []
        lost = [claim for claim, held in self.held.items() if held.node == name]
        for claim in lost:
            del self.held[claim]
        self.rows[row] = None
        self.spec_generation[row] += 1
        self._refresh_row(row)
        return lost

    def node(self, name: str) -> NodeRow | None:
        row = self.by_name.get(name)
        return None if row is None else self.rows[row]

    # -- allocations ------------------------------------------------------------------------

    def commit(self, claim: str, held: Held) -> None:
        """Record a claim's allocation; raises ValueError if it does not fit (nothing changes)."""
        if claim in self.held:
            raise ValueError(f"claim {claim} already holds devices on {self.held[claim].node}")
        node = self.node(held.node)
        if node is None:
            raise ValueError(f"claim {claim}: node {held.node} is not in the inventory")
        problem = fits_exactly(node, held.taken)
        if problem:
            raise ValueError(f"claim {claim} does not fit on node {held.node}: {problem}")
        for i, taken in enumerate(held.taken):
            _take(node, f"{claim}\0{i}", taken)
        self.held[claim] = held
        self._refresh_devices(node, held.taken)

    def release(self, claim: str) -> Held | None:
        held = self.held.pop(claim, None)
        if held is None:
            return None
        node = self.node(held.node)
        if node is not None:
            for i, taken in enumerate(held.taken):
                _give_back(node, f"{claim}\0{i}", taken)
            self._refresh_devices(node, held.taken)
        return held

    # -- internals --------------------------------------------------------------------------

    def _new_row(self, devices: int) -> int:
        if devices > self.width:
            self._widen(devices)
        self.rows.append(None)
        self.generation = np.append(self.generation, 0)
        self.spec_generation = np.append(self.spec_generation, 0)
        for name in ("present", "usable", "unused", "shared"):
            grown = np.zeros((len(self.rows), self.width), dtype=bool)
            grown[:-1] = getattr(self, name)
            setattr(self, name, grown)
        milli = np.zeros((len(self.rows), self.width), dtype=np.int64)
        milli[:-1] = self.free_milli
        self.free_milli = milli
        for table in (self.cap_free, self.cap_total):
            for cap, values in table.items():
                grown_f = np.zeros((len(self.rows), self.width))
                grown_f[:-1] = values
                table[cap] = grown_f
        return len(self.rows) - 1

    def _widen(self, width: int) -> None:
        extra = width - self.width
        self.width = width
        for name in ("present", "usable", "unused", "shared"):
            setattr(self, name, np.pad(getattr(self, name), ((0, 0), (0, extra))))
        self.free_milli = np.pad(self.free_milli, ((0, 0), (0, extra)))
        for table in (self.cap_free, self.cap_total):
            for cap in table:
                table[cap] = np.pad(table[cap], ((0, 0), (0, extra)))

    def _refresh_devices(self, node: NodeRow, taken: Iterable[Taken]) -> None:
        """After an allocation change: only the devices it touched can have moved."""
        row = node.row
        self.generation[row] += 1
        for column in {node.column_of[t.device] for t in taken if t.device in node.column_of}:
            slot = node.slots[column]
            usable = bool(self.usable[row, column])
            self.unused[row, column] = usable and not slot.holders
            for cap in slot.capacity:
                self.cap_free[cap][row, column] = float(slot.free[cap])
            self.free_milli[row, column] = _free_milli(slot) if usable else 0

    def _refresh_row(self, row: int) -> None:
        self.generation[row] += 1
        node = self.rows[row]
        self.usable[row] = self.unused[row] = self.shared[row] = self.present[row] = False
        self.free_milli[row] = 0
        for table in (self.cap_free, self.cap_total):
            for values in table.values():
                values[row] = 0.0
        if node is None:
            return
        for column, slot in enumerate(node.slots):
            usable = node.schedulable and slot.schedulable
            self.present[row, column] = True
            self.usable[row, column] = usable
            self.unused[row, column] = usable and not slot.holders
            self.shared[row, column] = slot.shared
            for cap, total in slot.capacity.items():
                if cap not in self.cap_free:
                    size = (len(self.rows), self.width)
                    self.cap_free[cap], self.cap_total[cap] = np.zeros(size), np.zeros(size)
                self.cap_total[cap][row, column] = float(total)
                self.cap_free[cap][row, column] = float(slot.free[cap])
                self.cap_typical[cap] = max(self.cap_typical.get(cap, 0.0), float(total))
            self.free_milli[row, column] = _free_milli(slot) if usable else 0


def _free_milli(slot: Slot) -> int:
    if not slot.shared:
        return 0 if slot.holders else MILLI
    if not slot.capacity:
        return 0 if slot.holders else MILLI
    ratios = [float(slot.free[c]) / float(t) for c, t in slot.capacity.items() if t]
    return int(min(ratios, default=1.0) * MILLI)


def fits_exactly(node: NodeRow, taken: Iterable[Taken]) -> str:
    """Why ``taken`` cannot all be held on ``node`` as it is now, or "" when it can."""
    whole: set[int] = set()
    amounts: dict[int, dict[str, Fraction]] = {}
    counters: dict[str, dict[str, Fraction]] = {}
    for item in taken:
        column = node.column_of.get(item.device)
        if column is None:
            return f"device {item.device} is gone"
        slot = node.slots[column]
        first_use = not slot.holders and column not in whole and column not in amounts
        if item.exclusive:
            if not first_use:
                return f"device {slot.name} is already allocated"
            whole.add(column)
        else:
            if not slot.shared:
                return f"device {slot.name} cannot be shared"
            if column in whole or any(h.exclusive for h in slot.holders.values()):
                return f"device {slot.name} is held whole"
            wanted = amounts.setdefault(column, {})
            for cap, amount in item.consumed:
                wanted[cap] = wanted.get(cap, Fraction(0)) + amount
                if wanted[cap] > slot.free.get(cap, Fraction(-1)):
                    return f"device {slot.name} has too little {cap} left"
        if first_use:
            for counter_set, needs in slot.consumes:
                left = counters.setdefault(counter_set, dict(node.counters.get(counter_set, {})))
                for counter, amount in needs:
                    left[counter] = left.get(counter, Fraction(0)) - amount
                    if left[counter] < 0:
                        return f"counter set {counter_set} has too little {counter} left"
    return ""


def _evicted(node: NodeRow, taken: Iterable[Taken]) -> str:
    if node.evicting:
        return f"node {node.name} has a NoExecute taint"
    for item in taken:
        slot = node.slots[node.column_of[item.device]]
        if slot.evicting:
            return f"device {slot.name} has a NoExecute taint"
    return ""


def _take(node: NodeRow, holder: str, taken: Taken) -> None:
    slot = node.slots[node.column_of[taken.device]]
    if not slot.holders:
        for counter_set, amounts in slot.consumes:
            pool = node.counters.setdefault(counter_set, {})
            for counter, amount in amounts:
                pool[counter] = pool.get(counter, Fraction(0)) - amount
    slot.holders[holder] = taken
    for cap, amount in taken.consumed:
        slot.free[cap] = slot.free.get(cap, Fraction(0)) - amount


def _give_back(node: NodeRow, holder: str, taken: Taken) -> None:
    column = node.column_of.get(taken.device)
    if column is None:
        return
    slot = node.slots[column]
    if slot.holders.pop(holder, None) is None:
        return
    for cap, amount in taken.consumed:
        slot.free[cap] = slot.free.get(cap, Fraction(0)) + amount
    if not slot.holders:
        for counter_set, amounts in slot.consumes:
            pool = node.counters.setdefault(counter_set, {})
            for counter, amount in amounts:
                pool[counter] = pool.get(counter, Fraction(0)) + amount


def _quantity(value: object, where: str) -> Fraction:
    raw = value.get("value") if isinstance(value, Mapping) else value
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        raise InventoryError(f"{where}: expected a quantity")
    try:
        return parse_quantity(raw)
    except QuantityError as exc:
        raise InventoryError(f"{where}: {exc}") from None


def _tainted(taints: object, effects: tuple[str, ...]) -> bool:
    if not isinstance(taints, list):
        return False
    return any(isinstance(t, Mapping) and t.get("effect") in effects for t in taints)


def _read_node(node: Mapping[str, Any]) -> NodeRow:
    meta = node.get("metadata") or {}
    name = str(meta.get("name") or "")
    if not name:
        raise InventoryError("Node: metadata.name is empty")
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    health = {
        d.get("name"): d.get("health") for d in status.get("devices") or [] if isinstance(d, dict)
    }
    ready = True
    for condition in status.get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            ready = condition.get("status") != "False"
    slots = []
    seen: set[str] = set()
    for i, device in enumerate(spec.get("devices") or []):
        where = f"Node {name}: spec.devices[{i}]"
        if not device.get("name") or device.get("name") in seen:
            raise InventoryError(f"{where}.name: device names must be set and unique")
        seen.add(str(device.get("name")))
        capacity = {
            str(cap): _quantity(value, f"{where}.capacity.{cap}")
            for cap, value in (device.get("capacity") or {}).items()
        }
        consumes = tuple(
            (
                str(entry.get("counterSet")),
                tuple(
                    (str(c), _quantity(v, f"{where}.consumesCounters[{j}].counters.{c}"))
                    for c, v in sorted((entry.get("counters") or {}).items())
                ),
            )
            for j, entry in enumerate(device.get("consumesCounters") or [])
        )
        slots.append(
            Slot(
                name=str(device.get("name")),
                driver=str(device.get("driver") or ""),
                raw=device,
                capacity=capacity,
                free=dict(capacity),
                shared=bool(device.get("allowMultipleAllocations")),
                consumes=consumes,
                schedulable=health.get(device.get("name")) != "Unhealthy"
                and not _tainted(device.get("taints"), BLOCKING_EFFECTS),
                evicting=_tainted(device.get("taints"), ("NoExecute",)),
            )
        )
    counters = {
        str(entry.get("name")): {
            str(c): _quantity(v, f"Node {name}: spec.sharedCounters[{k}].counters.{c}")
            for c, v in (entry.get("counters") or {}).items()
        }
        for k, entry in enumerate(spec.get("sharedCounters") or [])
    }
    return NodeRow(
        name=name,
        row=-1,
        slots=slots,
        counters=counters,
        schedulable=ready and not _tainted(spec.get("taints"), BLOCKING_EFFECTS),
        evicting=_tainted(spec.get("taints"), ("NoExecute",)),
        source=node,
    )
