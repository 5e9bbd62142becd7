"""The allocator: one ResourceClaim against the fleet — filter nodes, score them, pick devices.

Pure and in memory: the claim controller (and the benchmarks) keep a :class:`FleetIndex` and a
:class:`Selection` up to date and call :meth:`Allocator.place` per pending claim. It returns a
:class:`Placement` (the node, the devices and amounts, ready to become ``status.allocation``) or
a :class:`NoFit` saying whether the claim could ever fit (``Unschedulable``) or only not now.
Nothing is taken until :meth:`Allocator.commit`.

How one decision goes:

1. each request's alternatives (``firstAvailable``) are tried in order, the first request's
   varying slowest, as Kubernetes does;
2. filter (array operations over every node at once): eligible devices (class and claim
   selectors, cached), usable (node Ready and untainted, device healthy and untainted) and
   with room now (unused for a whole device, enough free capacity for a share); a node is a
   candidate when every request finds enough such devices on it;
3. score the candidates with the plugins (cached per alternative, re-scored only for nodes that
   changed since), best first, ties to a per-run random node order (consolidates like
   first-fit);
4. exact check on the best nodes in order: pick the devices with exact quantities, counter
   sets and ``matchAttribute`` constraints; the first node where that succeeds wins.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from corral.api.quantity import format_quantity
from corral.devices.demand import Choice, Demand
from corral.devices.fleet_index import (
    BoolArray,
    FleetIndex,
    FloatArray,
    Held,
    IntArray,
    NodeRow,
    Slot,
    Taken,
)
from corral.devices.scoring import ScorePlugin, ScoreView, default_plugins
from corral.devices.selection import Selection, SelectorProblem

MAX_ALTERNATIVES = 64
MAX_EXACT_TRIES = 32
MAX_VALUE_COMBOS = 64
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Placement:
    node: str
    taken: tuple[Taken, ...]
    drivers: tuple[str, ...]

    @property
    def held(self) -> Held:
        return Held(self.node, self.taken)

    def allocation(self) -> dict[str, Any]:
        """``status.allocation`` in the ResourceClaim's shape."""
        results = []
        for taken, driver in zip(self.taken, self.drivers, strict=True):
            entry: dict[str, Any] = {
                "request": taken.request,
                "driver": driver,
                "pool": self.node,
                "device": taken.device,
            }
            if taken.consumed and not taken.exclusive:
                entry["consumedCapacity"] = {
                    cap: format_quantity(amount) for cap, amount in taken.consumed
                }
            results.append(entry)
        return {"nodeName": self.node, "devices": {"results": results}}


@dataclass(frozen=True, slots=True)
class NoFit:
    """Why nothing was placed. ``ever`` False: no node of the fleet could take it even empty."""

    ever: bool
    message: str


@dataclass(eq=False)
class _Scores:
    score: FloatArray
    seen: IntArray
    versions: tuple[int, ...]


@dataclass(eq=False)
class Allocator:
    index: FleetIndex
    selection: Selection
    plugins: tuple[ScorePlugin, ...] = field(default_factory=default_plugins)
    seed: int = 0
    _rank: IntArray = field(init=False)
    _cache: dict[tuple[Choice, ...], _Scores] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._rank = np.zeros(0, dtype=np.int64)

    # -- public -----------------------------------------------------------------------------

    def place(
        self, demand: Demand, *, only_node: str | None = None, learn: bool = True
    ) -> Placement | NoFit:
        """The best placement of ``demand`` now (on ``only_node`` when given), or why none.

        ``learn`` False keeps the plugins from counting this call in the demand mix (what-if
        calls, e.g. preemption's search).
        """
        problems: list[str] = []
        tried = 0
        for choices in self._alternatives(demand):
            tried += 1
            try:
                eligible = tuple(
                    self.selection.eligible(c.device_class, c.selectors) for c in choices
                )
            except SelectorProblem as exc:
                problems.append(str(exc))
                continue
            if only_node is not None:
                row = self.index.by_name.get(only_node)
                scope = np.asarray([] if row is None else [row], dtype=np.int64)
                candidates = self._filter(choices, eligible, now=True, rows=scope)
                rows = scope[candidates]
            else:
                rows = np.flatnonzero(self._filter(choices, eligible, now=True))
            if not rows.size:
                continue
            if learn:
                for plugin in self.plugins:
                    plugin.observe(choices, self.index)
            for row in self._ranked(choices, eligible, rows)[:MAX_EXACT_TRIES]:
                placed = self._exact(demand, choices, eligible, int(row))
                if placed is not None:
                    return placed
        return self._why(demand, problems, tried)

    def commit(self, claim: str, placement: Placement) -> None:
        self.index.commit(claim, placement.held)

    def release(self, claim: str) -> Held | None:
        return self.index.release(claim)

    # -- steps ------------------------------------------------------------------------------

    def _alternatives(self, demand: Demand) -> Iterator[tuple[Choice, ...]]:
        options = itertools.product(*(r.choices for r in demand.requests))
        return itertools.islice(options, MAX_ALTERNATIVES)

    def _filter(
        self,
        choices: tuple[Choice, ...],
        eligible: tuple[BoolArray, ...],
        *,
        now: bool,
        rows: IntArray | None = None,
    ) -> BoolArray:
        """Which nodes (all, or ``rows``) every request finds enough devices on (now, or on
        an empty fleet)."""
        index = self.index
        pick: IntArray | slice = slice(None) if rows is None else rows
        nodes: BoolArray = np.ones(len(index) if rows is None else rows.size, dtype=bool)
        for choice, mine_all in zip(choices, eligible, strict=True):
            mine = mine_all[pick]
            room = _room(choice, index, now=now, rows=pick)
            ready = mine & (index.usable[pick] if now else index.present[pick])
            if choice.all_devices:
                count = mine.sum(axis=1)
                nodes &= (count > 0) & ((ready & room).sum(axis=1) == count)
            elif choice.capacity and choice.count > 1:
                # A shareable device may take several of the claim's shares.
                fits = _shares_per_device(choice, index, now=now, rows=pick)
                nodes &= np.where(ready & room, fits, 0).sum(axis=1) >= choice.count
            else:
                nodes &= (ready & room).sum(axis=1) >= choice.count
        return nodes

    def _ranked(
        self, choices: tuple[Choice, ...], eligible: tuple[BoolArray, ...], rows: IntArray
    ) -> IntArray:
        index = self.index
        size = len(index)
        if self._rank.size < size:
            extra = np.random.default_rng(self.seed + self._rank.size).permutation(
                size - self._rank.size
            )
            self._rank = np.concatenate([self._rank, self._rank.size + extra])
        versions = tuple(p.version for p in self.plugins)
        entry = self._cache.get(choices)
        if entry is None or entry.versions != versions or entry.score.size != size:
            entry = self._cache[choices] = _Scores(
                np.zeros(size), np.full(size, -1, dtype=np.int64), versions
            )
        stale = rows[entry.seen[rows] != index.generation[rows]]
        if stale.size:
            view = ScoreView(index, choices, eligible)
            total = np.zeros(stale.size)
            for plugin in self.plugins:
                total += plugin.weight * plugin.scores(view, stale)
            entry.score[stale] = total
            entry.seen[stale] = index.generation[stale]
        order = np.lexsort((self._rank[rows], -entry.score[rows]))
        return rows[order]

    def _exact(
        self,
        demand: Demand,
        choices: tuple[Choice, ...],
        eligible: tuple[BoolArray, ...],
        row: int,
        *,
        pristine: bool = False,
    ) -> Placement | None:
        """Exact devices on node ``row`` now (or, ``pristine``, were nothing allocated)."""
        node = self.index.rows[row]
        if node is None:
            return None
        if pristine:
            node = node.pristine()
        ready = self.index.present if pristine else self.index.usable
        options = [
            [c for c in range(len(node.slots)) if mine[row, c] and ready[row, c]]
            for mine in eligible
        ]
        names = [r.name for r in demand.requests]
        constraints = [
            (c.attribute, [i for i, n in enumerate(names) if not c.requests or n in c.requests])
            for c in demand.constraints
        ]
        value_sets = []
        for attribute, members in constraints:
            found = {node.slots[c].attribute(attribute) for i in members for c in options[i]}
            found.discard(None)
            value_sets.append(sorted(found, key=repr))
        for combo in itertools.islice(itertools.product(*value_sets), MAX_VALUE_COMBOS):
            allowed = [list(o) for o in options]
            for (attribute, members), value in zip(constraints, combo, strict=True):
                for i in members:
                    allowed[i] = [
                        c for c in allowed[i] if node.slots[c].attribute(attribute) == value
                    ]
            taken = _assign(node, choices, allowed)
            if taken is not None:
                drivers = tuple(node.slots[node.column_of[t.device]].driver for t in taken)
                return Placement(node.name, taken, drivers)
        return None

    def _shortfall(self, demand: Demand) -> str:
        """What the fleet lacks for the claim's first alternative, in words."""
        for request in demand.requests:
            choice = request.choices[0]
            try:
                eligible = self.selection.eligible(choice.device_class, choice.selectors)
            except SelectorProblem as exc:
                return str(exc)
            most = _most_per_node(eligible)
            if most == 0:
                return f"no device in the fleet matches request {request.name}"
            if not choice.all_devices and most < choice.count and not choice.capacity:
                return (
                    f"request {request.name} asks for {choice.count} devices; "
                    f"at most {most} matching devices are on one node"
                )
        return "no node has every requested device with the capacity asked for"

    def _why(self, demand: Demand, problems: list[str], tried: int) -> NoFit:
        if problems and len(problems) == tried:
            return NoFit(ever=False, message="; ".join(dict.fromkeys(problems)))
        blocked = ""
        for choices in self._alternatives(demand):
            try:
                eligible = tuple(
                    self.selection.eligible(c.device_class, c.selectors) for c in choices
                )
            except SelectorProblem:
                continue
            rows = np.flatnonzero(self._filter(choices, eligible, now=False))
            for row in rows[:MAX_EXACT_TRIES]:
                node = self.index.rows[int(row)]
                # Without constraints or counter sets the filter's answer is already exact.
                simple = node is not None and not demand.constraints and not node.counters
                if simple or self._exact(demand, choices, eligible, int(row), pristine=True):
                    return NoFit(ever=True, message="no node has the devices free now")
            if rows.size > MAX_EXACT_TRIES:
                return NoFit(ever=True, message="no node has the devices free now")
            if rows.size and not blocked:
                constraints = ", ".join(c.attribute for c in demand.constraints)
                blocked = (
                    f"no node has enough matching devices sharing one value of {constraints}"
                    if constraints
                    else "no node can hold every requested device at once (shared counters)"
                )
        if blocked:
            return NoFit(ever=False, message=f"no node could ever satisfy the claim: {blocked}")
        errors = [
            self.selection.runtime_error(expression)
            for request in demand.requests
            for choice in request.choices
            for expression in choice.selectors
        ]
        detail = "; ".join(e for e in errors if e) or self._shortfall(demand)
        return NoFit(ever=False, message=f"no node could ever satisfy the claim: {detail}")


def _most_per_node(eligible: BoolArray) -> int:
    return int(eligible.sum(axis=1).max(initial=0))


def _room(
    choice: Choice, index: FleetIndex, *, now: bool, rows: IntArray | slice = slice(None)
) -> BoolArray:
    """Devices with room for one device of ``choice`` (now, or when nothing is allocated)."""
    whole: BoolArray = (index.unused if now else index.present)[rows]
    if not choice.capacity or choice.all_devices:
        return whole
    shared: BoolArray = index.shared[rows].copy()
    big_enough: BoolArray = np.ones(whole.shape, dtype=bool)
    for cap, amount in choice.capacity:
        free = index.cap_free.get(cap) if now else index.cap_total.get(cap)
        total = index.cap_total.get(cap)
        if free is None or total is None:
            return np.zeros(whole.shape, dtype=bool)
        shared &= free[rows] >= float(amount) - _EPSILON
        big_enough &= total[rows] >= float(amount) - _EPSILON
    return shared | (whole & ~index.shared[rows] & big_enough)


def _shares_per_device(
    choice: Choice, index: FleetIndex, *, now: bool, rows: IntArray | slice
) -> IntArray:
    """How many of ``choice``'s shares each device could take (1 for a whole device)."""
    most = np.full(index.present[rows].shape, choice.count, dtype=np.int64)
    for cap, amount in choice.capacity:
        table = index.cap_free if now else index.cap_total
        free = table.get(cap)
        if free is None:
            return np.zeros(most.shape, dtype=np.int64)
        fit = np.floor(free[rows] / float(amount) + _EPSILON).astype(np.int64)
        most = np.minimum(most, fit)
    return np.asarray(np.where(index.shared[rows], most, 1), dtype=np.int64)


def _assign(
    node: NodeRow, choices: Sequence[Choice], allowed: Sequence[Sequence[int]]
) -> tuple[Taken, ...] | None:
    """Exact devices for every choice on ``node`` (greedy, best fit for shares), or None."""
    taken: list[Taken] = []
    whole: set[int] = set()
    used: dict[int, dict[str, Fraction]] = {}
    counters = {name: dict(left) for name, left in node.counters.items()}
    for choice, columns in zip(choices, allowed, strict=True):
        if choice.all_devices:
            picks = list(columns)
            if not picks or any(
                not _whole_ok(node.slots[c], c, whole, used, counters) for c in picks
            ):
                return None
            for c in picks:
                taken.append(_take_whole(node.slots[c], c, choice, whole, counters))
            continue
        for _ in range(choice.count):
            column = (
                _best_share(node, choice, columns, whole, used, counters)
                if choice.capacity
                else None
            )
            if column is not None:
                slot = node.slots[column]
                amounts = used.setdefault(column, {})
                if not slot.holders and len(amounts) == 0:
                    _spend_counters(slot, counters)
                for cap, amount in choice.capacity:
                    amounts[cap] = amounts.get(cap, Fraction(0)) + amount
                taken.append(Taken(slot.name, choice.result_name, choice.capacity, False))
                continue
            fresh = [
                c
                for c in columns
                if _whole_ok(node.slots[c], c, whole, used, counters)
                and _big_enough(node.slots[c], choice)
            ]
            if not fresh:
                return None
            # Best fit: the smallest device (fewest counters, least capacity) that will do,
            # so a small request does not take a big partition.
            pick = min(fresh, key=lambda c: _size(node.slots[c]))
            taken.append(_take_whole(node.slots[pick], pick, choice, whole, counters))
    return tuple(taken)


def _size(slot: Slot) -> tuple[Fraction, Fraction]:
    counters = sum((amount for _, needs in slot.consumes for _, amount in needs), Fraction(0))
    return counters, sum(slot.capacity.values(), Fraction(0))


def _big_enough(slot: Slot, choice: Choice) -> bool:
    return all(slot.capacity.get(cap, Fraction(-1)) >= amount for cap, amount in choice.capacity)


def _best_share(
    node: NodeRow,
    choice: Choice,
    columns: Sequence[int],
    whole: set[int],
    used: dict[int, dict[str, Fraction]],
    counters: dict[str, dict[str, Fraction]],
) -> int | None:
    best: tuple[Fraction, int] | None = None
    for c in columns:
        slot = node.slots[c]
        if not slot.shared or c in whole or any(h.exclusive for h in slot.holders.values()):
            continue
        mine = used.get(c, {})
        left = [
            slot.free.get(cap, Fraction(-1)) - mine.get(cap, Fraction(0)) - amount
            for cap, amount in choice.capacity
        ]
        if min(left) < 0:
            continue
        if not slot.holders and c not in used and not _counters_ok(slot, counters):
            continue
        if best is None or min(left) < best[0]:
            best = (min(left), c)
    return None if best is None else best[1]


def _whole_ok(
    slot: Slot,
    column: int,
    whole: set[int],
    used: dict[int, dict[str, Fraction]],
    counters: dict[str, dict[str, Fraction]],
) -> bool:
    if slot.holders or column in whole or column in used:
        return False
    return _counters_ok(slot, counters)


def _counters_ok(slot: Slot, counters: dict[str, dict[str, Fraction]]) -> bool:
    for counter_set, needs in slot.consumes:
        left = counters.get(counter_set, {})
        if any(left.get(name, Fraction(0)) < amount for name, amount in needs):
            return False
    return True


def _spend_counters(slot: Slot, counters: dict[str, dict[str, Fraction]]) -> None:
    for counter_set, needs in slot.consumes:
        left = counters.setdefault(counter_set, {})
        for name, amount in needs:
            left[name] = left.get(name, Fraction(0)) - amount


def _take_whole(
    slot: Slot,
    column: int,
    choice: Choice,
    whole: set[int],
    counters: dict[str, dict[str, Fraction]],
) -> Taken:
    whole.add(column)
    _spend_counters(slot, counters)
    return Taken(slot.name, choice.result_name, tuple(sorted(slot.capacity.items())), True)
