"""The claim scheduler's in-memory core: inventory, quotas, the queue and the decisions.

The claim controller keeps one :class:`ClaimScheduler` in step with the store (Nodes,
DeviceClasses, DeviceQuotas, bound ResourceClaims) and asks it to decide pending claims; it then
writes each :class:`Decision` back (and undoes it here when the write loses a race). Benchmarks
and property tests drive the same object directly. Nothing here does I/O.

A decision, in order: an unreadable claim or one no node could ever satisfy is
``unschedulable``; otherwise the allocator's best placement is bound if the queue's quota admits
it; otherwise preemption looks for the smallest victim set; otherwise the claim stays
``pending`` with the reason (no devices free now, or the quota).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from corral.api.quantity import QuantityError, parse_quantity
from corral.devices.allocator import Allocator, NoFit, Placement
from corral.devices.demand import Demand
from corral.devices.fleet_index import FleetIndex, Held, Taken
from corral.devices.preemption import find_preemption
from corral.devices.queueing import ClaimQueue
from corral.devices.quotas import QuotaBook, placement_usage, quota_from_object, result_classes
from corral.devices.scoring import ScorePlugin, default_plugins
from corral.devices.selection import Selection, SelectorCompiler

Outcome = Literal["bound", "pending", "unschedulable"]


@dataclass(frozen=True, slots=True)
class Decision:
    key: str
    outcome: Outcome
    reason: str
    message: str
    placement: Placement | None = None
    victims: tuple[str, ...] = ()


@dataclass(eq=False)
class ClaimScheduler:
    compile: SelectorCompiler
    plugins: tuple[ScorePlugin, ...] = field(default_factory=default_plugins)
    seed: int = 0
    index: FleetIndex = field(init=False)
    selection: Selection = field(init=False)
    allocator: Allocator = field(init=False)
    book: QuotaBook = field(init=False, default_factory=QuotaBook)
    queue: ClaimQueue = field(init=False, default_factory=ClaimQueue)
    bound: dict[str, Demand] = field(init=False, default_factory=dict)
    epoch: int = field(init=False, default=0)
    """Moves whenever something is freed or the inventory or policy changes. Binding never
    helps a waiting claim (what it took was free before, and is a victim now), so a claim that
    failed at this epoch would fail again: :meth:`cycle` skips it."""
    _failed_at: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.index = FleetIndex()
        self.selection = Selection(self.index, self.compile)
        self.allocator = Allocator(self.index, self.selection, self.plugins, self.seed)

    # -- inventory and policy objects -------------------------------------------------------

    def put_node(self, node: Mapping[str, Any]) -> list[str]:
        """Add or update a Node; returns bound claims that lost their devices (now pending)."""
        name = str((node.get("metadata") or {}).get("name") or "")
        before = self.index.node(name)
        if before is None or _placement_facts(before.source) != _placement_facts(node):
            # A heartbeat changes nothing placement reads: waiting claims need no retry.
            self.epoch += 1
        lost = self.index.put_node(node)
        return self._lost(lost) if lost else lost

    def remove_node(self, name: str) -> list[str]:
        self.epoch += 1
        return self._lost(self.index.remove_node(name))

    def put_class(self, obj: Mapping[str, Any]) -> None:
        self.epoch += 1
        spec = obj.get("spec") or {}
        expressions = tuple(
            str((s.get("cel") or {}).get("expression") or "") for s in spec.get("selectors") or []
        )
        self.selection.set_class(str(obj["metadata"]["name"]), expressions)

    def remove_class(self, name: str) -> None:
        self.epoch += 1
        self.selection.remove_class(name)

    def put_quota(self, obj: Mapping[str, Any]) -> None:
        self.epoch += 1
        self.book.set_quota(quota_from_object(obj))

    def remove_quota(self, name: str) -> None:
        self.epoch += 1
        self.book.remove_quota(name)

    # -- claims -----------------------------------------------------------------------------

    def submit(self, demand: Demand) -> None:
        """A claim without an allocation (or a changed one): it waits in the queue."""
        if demand.key in self.bound:
            self.forget(demand.key)
        self._failed_at.pop(demand.key, None)
        self.queue.push(demand)

    def adopt(self, demand: Demand, allocation: Mapping[str, Any]) -> str:
        """Record an allocation already in the store; returns why it cannot be held, or ""."""
        self.queue.remove(demand.key)
        if demand.key in self.bound:
            held_now = self.index.held.get(demand.key)
            if held_now is not None and held_now == held_from_allocation(allocation, self.index):
                return ""
            self.forget(demand.key)
        held = held_from_allocation(allocation, self.index)
        if isinstance(held, str):
            return held
        try:
            self.index.commit(demand.key, held)
        except ValueError as exc:
            return str(exc)
        placement = Placement(held.node, held.taken, tuple("" for _ in held.taken))
        self.book.charge(demand.key, demand.queue, self._usage(demand, placement))
        self.bound[demand.key] = demand
        return ""

    def forget(self, key: str) -> None:
        """The claim is gone or no longer allocated: free its devices and its quota."""
        self.epoch += 1
        self._failed_at.pop(key, None)
        self.queue.remove(key)
        self.bound.pop(key, None)
        self.index.release(key)
        self.book.refund(key)

    # -- deciding ---------------------------------------------------------------------------

    def decide(self, demand: Demand) -> Decision:
        """Decide one claim and apply it here (bind, evict victims); the caller persists it."""
        self.queue.remove(demand.key)
        placed = self.allocator.place(demand)
        if isinstance(placed, NoFit) and not placed.ever:
            # Still queued: a new Node or DeviceClass may make it schedulable after all.
            self.queue.push(demand)
            self._failed_at[demand.key] = self.epoch
            return Decision(demand.key, "unschedulable", "NoNodeCanEverFit", placed.message)
        blocked = ""
        if isinstance(placed, Placement):
            blocked = self.book.admits(demand.queue, self._usage(demand, placed))
            if not blocked:
                self._bind(demand, placed)
                return Decision(demand.key, "bound", "Allocated", f"on node {placed.node}", placed)
        preemption = find_preemption(self.allocator, self.book, demand, self.bound)
        if preemption is not None:
            for victim in preemption.victims:
                self.queue.push(self.bound[victim])
                self.forget_allocation(victim)
            self._bind(demand, preemption.placement)
            message = f"on node {preemption.placement.node} after preempting " + ", ".join(
                preemption.victims
            )
            return Decision(
                demand.key,
                "bound",
                "AllocatedAfterPreemption",
                message,
                preemption.placement,
                preemption.victims,
            )
        self.queue.push(demand)
        self._failed_at[demand.key] = self.epoch
        if blocked:
            return Decision(demand.key, "pending", "QuotaExceeded", blocked)
        assert isinstance(placed, NoFit)
        return Decision(demand.key, "pending", "WaitingForDevices", placed.message)

    def forget_allocation(self, key: str) -> None:
        """Release a bound claim's devices and quota but keep it queued if it was."""
        self.epoch += 1
        self.bound.pop(key, None)
        self.index.release(key)
        self.book.refund(key)

    def undo(self, decision: Decision) -> None:
        """The store refused the bind (another scheduler won): forget it here."""
        placement = decision.placement
        if placement is not None and self.index.held.get(decision.key) == placement.held:
            self.forget_allocation(decision.key)

    def cycle(self) -> list[Decision]:
        """Try every pending claim once, in queue order, skipping those nothing could help."""
        return [
            self.decide(demand)
            for demand in self.queue.ordered(self.book)
            if self._failed_at.get(demand.key) != self.epoch
        ]

    def worth_trying(self, key: str) -> bool:
        """Whether anything changed since ``key`` last failed to be placed."""
        return self._failed_at.get(key) != self.epoch

    # -- internals --------------------------------------------------------------------------

    def _bind(self, demand: Demand, placement: Placement) -> None:
        self.allocator.commit(demand.key, placement)
        self.book.charge(demand.key, demand.queue, self._usage(demand, placement))
        self.bound[demand.key] = demand

    def _usage(self, demand: Demand, placement: Placement) -> dict[tuple[str, str], Fraction]:
        classes = result_classes(demand)
        if any(t.request not in classes for t in placement.taken):
            return {}
        return placement_usage(placement, classes, self.index)

    def _lost(self, keys: list[str]) -> list[str]:
        self.epoch += 1
        for key in keys:
            demand = self.bound.pop(key, None)
            self.book.refund(key)
            if demand is not None:
                self.queue.push(demand)
        return keys


def _placement_facts(node: Mapping[str, Any]) -> tuple[Any, ...]:
    """What placement reads from a Node: its spec, readiness and device health."""
    status = node.get("status") or {}
    ready = [
        c.get("status")
        for c in status.get("conditions") or []
        if isinstance(c, Mapping) and c.get("type") == "Ready"
    ]
    return (node.get("spec"), ready, status.get("devices"))


def held_from_allocation(allocation: Mapping[str, Any], index: FleetIndex) -> Held | str:
    """The devices a stored ``status.allocation`` holds, or why it names what is not there."""
    node_name = str(allocation.get("nodeName") or "")
    node = index.node(node_name)
    if node is None:
        return f"node {node_name or '?'} is not in the inventory"
    taken = []
    for result in (allocation.get("devices") or {}).get("results") or []:
        device = str(result.get("device") or "")
        column = node.column_of.get(device)
        if column is None:
            return f"device {device} is not on node {node_name}"
        slot = node.slots[column]
        consumed_raw = result.get("consumedCapacity")
        if consumed_raw:
            try:
                consumed = tuple(
                    sorted((str(c), parse_quantity(v)) for c, v in consumed_raw.items())
                )
            except QuantityError as exc:
                return f"device {device}: consumedCapacity: {exc}"
            taken.append(Taken(device, str(result.get("request") or ""), consumed, False))
        else:
            whole = tuple(sorted(slot.capacity.items()))
            taken.append(Taken(device, str(result.get("request") or ""), whole, True))
    return Held(node_name, tuple(taken))
