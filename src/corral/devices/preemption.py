"""Preemption: which bound claims a pending claim may evict, and the smallest set that works.

Asked only when a claim cannot be placed (no devices free, or its queue's quota says no).
Who may be evicted, following Kueue and kube-scheduler:

- a claim of the same queue with a lower priority (the queue's ``withinQueue: LowerPriority``);
- a claim of another queue of the same cohort while that queue is borrowing (over nominal),
  when the preemptor's queue says ``reclaimWithinCohort: Any`` (any priority) or
  ``LowerPriority`` (lower ones only);
- between queues without a DeviceQuota, a claim with a lower priority.

The victims must make the claim fit on one node AND be admitted by the quota. The search runs
per node over that node's candidates plus, when the quota is what blocks, the cohort's
borrowers elsewhere: every set of one victim, then of two, ... (bounded), so the first set that
works is a smallest one; past the bound it falls back to kube-scheduler's reprieve (evict all,
then spare the most important victims while the claim still fits). Among nodes the smallest
set wins, then the one whose most important victim has the lowest priority.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from corral.devices.allocator import Allocator, Placement
from corral.devices.demand import Demand
from corral.devices.fleet_index import FleetIndex, Held
from corral.devices.quotas import QuotaBook, placement_usage, result_classes

MAX_NODES = 16
MAX_TRIES_PER_NODE = 256


@dataclass(frozen=True, slots=True)
class Preemption:
    placement: Placement
    victims: tuple[str, ...]
    reason: str


def may_preempt(preemptor: Demand, victim: Demand, book: QuotaBook) -> bool:
    """Whether ``preemptor`` is allowed to evict ``victim`` (see the module docstring)."""
    mine, theirs = book.queues.get(preemptor.queue), book.queues.get(victim.queue)
    if preemptor.queue == victim.queue:
        policy = mine.within_queue if mine else "LowerPriority"
        return policy == "LowerPriority" and victim.priority < preemptor.priority
    if mine is None and theirs is None:
        return victim.priority < preemptor.priority
    if mine is None or theirs is None or not mine.cohort or mine.cohort != theirs.cohort:
        return False
    if not book.borrowing(victim.queue):
        return False
    if mine.reclaim_within_cohort == "Any":
        return True
    return mine.reclaim_within_cohort == "LowerPriority" and victim.priority < preemptor.priority


def find_preemption(
    allocator: Allocator,
    book: QuotaBook,
    demand: Demand,
    bound: Mapping[str, Demand],
) -> Preemption | None:
    """The smallest victim set that lets ``demand`` be placed and admitted, or None."""
    index = allocator.index
    allowed = [v for v in bound.values() if v.key != demand.key and may_preempt(demand, v, book)]
    if not allowed:
        return None
    by_node: dict[str, list[Demand]] = {}
    for victim in allowed:
        held = index.held.get(victim.key)
        if held is not None:
            by_node.setdefault(held.node, []).append(victim)
    classes = result_classes(demand)
    if not _possible(allocator, book, demand, allowed):
        return None
    free_fit = allocator.place(demand, learn=False)
    quota_borrowers = [v for v in allowed if v.queue != demand.queue and index.held.get(v.key)]
    nodes = sorted(by_node, key=lambda n: (-len(by_node[n]), n))[:MAX_NODES]
    if isinstance(free_fit, Placement) and free_fit.node not in nodes:
        nodes.append(free_fit.node)

    def works(victims: Sequence[Demand], node: str) -> Placement | None:
        keys = [v.key for v in victims]
        released = _release(allocator, keys)
        try:
            placed = allocator.place(demand, only_node=node, learn=False)
            if not isinstance(placed, Placement):
                return None
            usage = placement_usage(placed, classes, index)
            if book.admits(demand.queue, usage, without=keys):
                return None
            # Reclaiming from the cohort only brings a queue back up to its nominal amount.
            reclaims = any(v.queue != demand.queue for v in victims)
            if reclaims and not book.within_nominal(demand.queue, usage, without=keys):
                return None
            return placed
        finally:
            _restore(allocator, released)

    best: tuple[tuple[int, int, int], Preemption] | None = None
    for node in nodes:
        pool = _ordered(
            by_node.get(node, []) + [v for v in quota_borrowers if _on(index, v) != node]
        )
        found = _smallest(pool, functools.partial(_works_on, works, node))
        if found is None:
            continue
        victims, placed = found
        rank = (len(victims), max(v.priority for v in victims), sum(v.priority for v in victims))
        if best is None or rank < best[0]:
            reason = _reason(demand, victims, placed.node, book)
            best = (rank, Preemption(placed, tuple(v.key for v in victims), reason))
    return None if best is None else best[1]


def _works_on(
    works: Callable[[Sequence[Demand], str], Placement | None],
    node: str,
    victims: Sequence[Demand],
) -> Placement | None:
    return works(victims, node)


def _possible(allocator: Allocator, book: QuotaBook, demand: Demand, allowed: list[Demand]) -> bool:
    """Whether evicting every allowed victim at once would let the claim in (one quick try
    before the per-node search; most hopeless cases end here)."""
    keys = [v.key for v in allowed]
    released = _release(allocator, keys)
    try:
        placed = allocator.place(demand, learn=False)
        if not isinstance(placed, Placement):
            return False
        usage = placement_usage(placed, result_classes(demand), allocator.index)
        return not book.admits(demand.queue, usage, without=keys)
    finally:
        _restore(allocator, released)


def _smallest(
    pool: Sequence[Demand], works: Callable[[Sequence[Demand]], Placement | None]
) -> tuple[tuple[Demand, ...], Placement] | None:
    if not pool or works(pool) is None:
        return None
    tries = 0
    for size in range(1, len(pool) + 1):
        for subset in itertools.combinations(pool, size):
            tries += 1
            if tries > MAX_TRIES_PER_NODE:
                return _reprieve(pool, works)
            placed = works(subset)
            if placed is not None:
                return subset, placed
    return None


def _reprieve(
    pool: Sequence[Demand], works: Callable[[Sequence[Demand]], Placement | None]
) -> tuple[tuple[Demand, ...], Placement] | None:
    victims = list(pool)
    for spare in sorted(pool, key=lambda v: -v.priority):
        trial = [v for v in victims if v is not spare]
        if trial and works(trial) is not None:
            victims = trial
    placed = works(victims)
    return None if placed is None else (tuple(victims), placed)


def _ordered(pool: list[Demand]) -> list[Demand]:
    # Cheapest victims first so equal-size sets prefer lower priorities and newer claims.
    unique = {v.key: v for v in pool}
    return sorted(unique.values(), key=lambda v: (v.priority, _neg(v.created), v.key))


def _neg(created: str) -> tuple[int, ...]:
    return tuple(-ord(ch) for ch in created)


def _on(index: FleetIndex, victim: Demand) -> str:
    held = index.held.get(victim.key)
    return held.node if held else ""


def _release(allocator: Allocator, keys: Sequence[str]) -> list[tuple[str, Held]]:
    released = []
    for key in keys:
        held = allocator.index.release(key)
        if held is not None:
            released.append((key, held))
    return released


def _restore(allocator: Allocator, released: list[tuple[str, Held]]) -> None:
    for key, held in released:
        allocator.index.commit(key, held)


def _reason(demand: Demand, victims: Sequence[Demand], node: str, book: QuotaBook) -> str:
    kinds = []
    if any(v.queue != demand.queue and book.borrowing(v.queue) for v in victims):
        kinds.append("reclaiming quota lent in the cohort")
    if any(v.priority < demand.priority for v in victims):
        kinds.append(f"priority {demand.priority} over lower priorities")
    why = " and ".join(kinds) or "preemption"
    return f"preempted by {demand.key} ({why}) for devices on node {node}"
