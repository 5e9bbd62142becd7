"""Scoring plugins: among the nodes a claim fits on, which is best (higher scores win).

The allocator filters nodes, then asks each plugin for a score per candidate node and adds them
up, weighted. Plugins see the fleet index and, per request choice, the eligible-device matrix;
they must not change anything. Built in:

- :class:`FragmentationScore`: corral's placement policy (``corral.scheduler``'s look-ahead on
  FGD) applied to devices. Each node's expected waste (GPU milli no likely future request can
  use, now or later) is measured with :class:`~corral.scheduler.lookahead.MixModel`, learned
  online from the requests seen so far; a node scores the drop in waste the placement brings.
  Shared devices count in thousandths of their capacity, whole devices as 1000 each.
- :class:`BinPackingScore`: the share of a node's devices already in use (MostAllocated), so
  ties go to fuller nodes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from corral.devices.demand import Choice
from corral.devices.fleet_index import MILLI, BoolArray, FleetIndex, FloatArray, IntArray
from corral.scheduler.lookahead import MixModel
from corral.scheduler.workload import TaskMix

REFIT_GROWTH = 2.0


@dataclass(frozen=True, eq=False)
class ScoreView:
    """One claim alternative being scored: its choices and each one's eligible devices."""

    index: FleetIndex
    choices: tuple[Choice, ...]
    eligible: tuple[BoolArray, ...]


class ScorePlugin(Protocol):
    weight: float

    @property
    def version(self) -> int:
        """Moves when the plugin's scores change for reasons other than node state."""
        ...

    def observe(self, choices: Sequence[Choice], index: FleetIndex) -> None:
        """A claim alternative is being placed (plugins may learn the demand mix)."""

    def scores(self, view: ScoreView, rows: IntArray) -> FloatArray: ...


def share_milli(choice: Choice, index: FleetIndex) -> int:
    """How much of a typical device the choice takes, in thousandths (1000 for whole ones)."""
    if not choice.capacity:
        return MILLI
    ratios = [
        float(amount) / index.cap_typical[cap] if index.cap_typical.get(cap) else 1.0
        for cap, amount in choice.capacity
    ]
    return max(1, min(MILLI, math.ceil(MILLI * max(ratios))))


def free_after(view: ScoreView, rows: IntArray) -> IntArray:
    """Per-device free milli of ``rows`` once the alternative's devices are taken there."""
    index = view.index
    free = index.free_milli[rows].copy()
    taken = np.zeros(free.shape, dtype=bool)
    for choice, eligible in zip(view.choices, view.eligible, strict=True):
        mine = eligible[rows] & index.usable[rows] & ~taken
        if choice.all_devices:
            free[mine] = 0
            taken |= mine
            continue
        if not choice.capacity:
            whole = mine & index.unused[rows]
            pick = whole & (whole.cumsum(axis=1) <= choice.count)
            free[pick] = 0
            taken |= pick
            continue
        need = _need_milli(choice, index, rows)
        for _ in range(choice.count):
            room = mine & index.shared[rows] & (free >= need) & (free > 0)
            best = np.where(room, free, MILLI + 1).argmin(axis=1)
            lines = np.arange(rows.size)
            has = room[lines, best]
            free[lines[has], best[has]] -= need[lines[has], best[has]]
            # Without a shareable device with room, a whole device is taken.
            whole = mine & index.unused[rows] & ~index.shared[rows] & ~has[:, None]
            pick = whole & (whole.cumsum(axis=1) <= 1)
            free[pick] = 0
            taken |= pick
    return free


def _need_milli(choice: Choice, index: FleetIndex, rows: IntArray) -> IntArray:
    need = np.ones((rows.size, index.width), dtype=np.int64)
    for cap, amount in choice.capacity:
        total = index.cap_total.get(cap)
        if total is None:
            continue
        present = total[rows]
        # Columns past a node's last device have no capacity (0): their share is 1, whole.
        part = np.divide(
            float(amount), present, out=np.ones_like(present, dtype=float), where=present > 0
        )
        need = np.maximum(need, np.ceil(part * MILLI).astype(np.int64))
    return np.minimum(need, MILLI)


class FragmentationScore:
    """Drop in expected waste (GPU milli) a placement brings; corral's default policy."""

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight
        self._seen: Counter[tuple[int, int]] = Counter()
        self._fitted_at = 0
        self._model: MixModel | None = None
        self._version = 0
        self._badness: FloatArray = np.zeros(0)
        self._badness_seen: IntArray = np.zeros(0, dtype=np.int64)

    @property
    def version(self) -> int:
        return self._version

    def observe(self, choices: Sequence[Choice], index: FleetIndex) -> None:
        for choice in choices:
            self._seen[(1 if choice.all_devices else choice.count, share_milli(choice, index))] += 1
        total = sum(self._seen.values())
        if total >= REFIT_GROWTH * self._fitted_at:
            self._fitted_at = total
            self._model = MixModel.learn(_mix(self._seen))
            self._version += 1
            self._badness_seen = np.full(len(index), -1, dtype=np.int64)

    def scores(self, view: ScoreView, rows: IntArray) -> FloatArray:
        if self._model is None:
            return np.zeros(rows.size)
        before = self._current(view.index, rows)
        after = self._measure(free_after(view, rows))
        return before - after

    def _measure(self, free: IntArray) -> FloatArray:
        assert self._model is not None
        zeros = np.zeros(free.shape[0], dtype=np.int64)
        return self._model.badness(zeros, zeros, zeros, free)

    def _current(self, index: FleetIndex, rows: IntArray) -> FloatArray:
        if self._badness.size != len(index):
            grown_seen = np.full(len(index), -1, dtype=np.int64)
            grown = np.zeros(len(index))
            kept = min(self._badness.size, len(index))
            grown_seen[:kept], grown[:kept] = self._badness_seen[:kept], self._badness[:kept]
            self._badness, self._badness_seen = grown, grown_seen
        stale = rows[self._badness_seen[rows] != index.generation[rows]]
        if stale.size:
            self._badness[stale] = self._measure(index.free_milli[stale])
            self._badness_seen[stale] = index.generation[stale]
        return self._badness[rows]


def _mix(seen: Counter[tuple[int, int]]) -> TaskMix:
    shapes = list(seen)
    total = float(sum(seen.values()))
    zeros = np.zeros(len(shapes), dtype=np.int64)
    return TaskMix(
        cpu_milli=zeros,
        memory_mib=zeros.copy(),
        num_gpu=np.asarray([count for count, _ in shapes], dtype=np.int64),
        gpu_milli=np.asarray([milli for _, milli in shapes], dtype=np.int64),
        weight=np.asarray([seen[s] / total for s in shapes], dtype=np.float64),
        model_ok=np.ones((1, len(shapes)), dtype=bool),
    )


class BinPackingScore:
    """Share of the node's usable devices already in use: fuller nodes first."""

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    @property
    def version(self) -> int:
        return 0

    def observe(self, choices: Sequence[Choice], index: FleetIndex) -> None:
        del choices, index

    def scores(self, view: ScoreView, rows: IntArray) -> FloatArray:
        index = view.index
        usable = index.usable[rows].sum(axis=1)
        used = usable - index.free_milli[rows].sum(axis=1) / MILLI
        return np.asarray(np.where(usable > 0, used / np.maximum(usable, 1), 0.0))


def default_plugins() -> tuple[ScorePlugin, ...]:
    """Fragmentation first; packing only separates nodes the fragmentation score ties."""
    return (FragmentationScore(weight=1.0), BinPackingScore(weight=1e-3))
