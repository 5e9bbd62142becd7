"""What a placement policy is, the registry of them by name, and the shared scoring engine.

A policy is built once per run from a :class:`PolicyContext` (the live fleet, the trace, a
seeded random generator) and then answers ``place(task)`` for each arriving task with a
:class:`Placement` or None when the task fits nowhere. It only reads the fleet; the caller
allocates.

:class:`ScoringPolicy` is the filter-then-score skeleton the built-in policies share. A node's
score for a task depends only on that node's state and the task's shape, so scores are cached per
shape and only nodes whose ``generation`` moved since are re-filtered and re-scored. Over a run
that costs about one node evaluation per distinct shape per decision instead of one per node.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from corral.scheduler.fleet import GPU_MILLI, Fleet, IntArray, Placement, Task
from corral.scheduler.workload import FloatArray, Shape


@dataclass(frozen=True, eq=False)
class PolicyContext:
    """What a policy may look at: the live fleet (read only), the trace, its own randomness.

    ``trace`` is the workload the run samples from. Only policies documented to use it (FGD
    uses its shape mix) may; the others learn from the tasks they are asked to place.
    """

    fleet: Fleet
    trace: Sequence[Task]
    rng: np.random.Generator


class Policy(Protocol):
    """Decides one task at a time; None means no node can take it now."""

    def place(self, task: Task) -> Placement | None: ...


PolicyFactory = Callable[[PolicyContext], Policy]

_REGISTRY: dict[str, PolicyFactory] = {}


def register_policy(name: str, factory: PolicyFactory) -> None:
    """Make ``factory`` available by ``name`` to simulate() and the CLI; names are unique."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"policy name {name!r} must be letters, digits, '-' or '_'")
    if name in _REGISTRY:
        raise ValueError(f"policy {name!r} is already registered")
    _REGISTRY[name] = factory


def policy_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def make_policy(name: str, context: PolicyContext) -> Policy:
    factory = _REGISTRY.get(name)
    if factory is None:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown policy {name!r}; known policies: {known}")
    return factory(context)


class _ShapeScores:
    """Cached scores of every node for one task shape; -inf marks nodes it does not fit."""

    __slots__ = ("gpu", "score", "seen")

    def __init__(self, size: int) -> None:
        self.score: FloatArray = np.full(size, -np.inf)
        self.gpu: IntArray = np.full(size, -1, dtype=np.int64)
        self.seen: IntArray = np.full(size, -1, dtype=np.int64)


class ScoringPolicy(ABC):
    """Filter nodes, score the ones that fit (higher is better), take the best.

    Subclasses give ``score``; they may change how ties are broken and how GPUs are picked on
    the chosen node. By default equal best scores go to the node that comes first in an order
    drawn at random once per run: the FGD simulator gives its nodes seeded random name prefixes
    and its scheduler takes the first of equal scores, and the published numbers depend on that
    (uniformly random tie-breaking costs FGD about 4.5 points on the default trace).
    """

    def __init__(self, context: PolicyContext) -> None:
        self.fleet = context.fleet
        self.rng = context.rng
        self.node_rank: IntArray = context.rng.permutation(len(context.fleet)).astype(np.int64)
        self._scores: dict[Shape, _ShapeScores] = {}

    @abstractmethod
    def score(self, task: Task, rows: IntArray) -> tuple[FloatArray, IntArray]:
        """Scores of nodes ``rows`` (all fit the task) and, for GPU-sharing tasks, the GPU
        column each would use (-1 otherwise)."""

    def forget_scores(self) -> None:
        """Drop every cached score (call when what the scores depend on, besides nodes, moved)."""
        self._scores.clear()

    def place(self, task: Task) -> Placement | None:
        entry = self._refresh(task)
        best = entry.score.max()
        if best == -np.inf:
            return None
        node = self.break_tie(task, np.flatnonzero(entry.score == best))
        return Placement(node, self.pick_gpus(task, node, int(entry.gpu[node])))

    def break_tie(self, task: Task, nodes: IntArray) -> int:
        del task
        if nodes.size == 1:
            return int(nodes[0])
        return int(nodes[self.node_rank[nodes].argmin()])

    def pick_gpus(self, task: Task, node: int, hint: int) -> tuple[int, ...]:
        """The GPUs on ``node``: the scored column for a share, the first free ones otherwise."""
        if task.num_gpu == 0:
            return ()
        if task.shares_gpu:
            return (hint,)
        full = np.flatnonzero(self.fleet.gpu_free[node] == GPU_MILLI)
        return tuple(int(gpu) for gpu in full[: task.num_gpu])

    def _refresh(self, task: Task) -> _ShapeScores:
        fleet = self.fleet
        entry = self._scores.get(task.shape)
        if entry is None:
            entry = self._scores[task.shape] = _ShapeScores(len(fleet))
        stale = np.flatnonzero(entry.seen != fleet.generation)
        if stale.size:
            entry.seen[stale] = fleet.generation[stale]
            entry.score[stale] = -np.inf
            rows = stale[fleet.fits(task, stale)]
            if rows.size:
                score, gpu = self.score(task, rows)
                if np.isnan(score).any():
                    raise RuntimeError(f"{type(self).__name__} scored a node NaN")
                entry.score[rows], entry.gpu[rows] = score, gpu
        return entry


def best_fit_gpu(fleet: Fleet, rows: IntArray, milli: int) -> IntArray:
    """Per node, the GPU column with the least free milli that still holds ``milli`` (first of
    equals)."""
    free = fleet.gpu_free[rows]
    choice = np.where(free >= milli, free, GPU_MILLI + 1).argmin(axis=1)
    return np.asarray(choice, dtype=np.int64)


def best_candidate_per_node(
    node: IntArray, gpu: IntArray, score: FloatArray
) -> tuple[FloatArray, IntArray]:
    """Per node (``node`` sorted, every node present), the best score and its first GPU."""
    starts = np.flatnonzero(np.r_[True, node[1:] != node[:-1]])
    best = np.maximum.reduceat(score, starts)
    winners = np.flatnonzero(score == np.repeat(best, np.diff(np.r_[starts, node.size])))
    _, first = np.unique(node[winners], return_index=True)
    return best, gpu[winners[first]].astype(np.int64)


def share_candidates(free: IntArray, milli: int) -> tuple[IntArray, IntArray]:
    """(node, GPU) pairs a share could go to, in node then GPU order, skipping a GPU whose free
    milli equals an earlier GPU's on the same node: the outcome would be the same."""
    width = free.shape[1]
    earlier = np.tri(width, width, -1, dtype=bool)
    repeat = ((free[:, :, None] == free[:, None, :]) & earlier).any(axis=2)
    node, gpu = np.nonzero((free >= milli) & ~repeat)
    return node.astype(np.int64), gpu.astype(np.int64)


def without_whole_gpus(free: IntArray, count: int) -> IntArray:
    """Per-GPU free milli after each node gives its first ``count`` fully free GPUs away."""
    full = free == GPU_MILLI
    return np.where(full & (full.cumsum(axis=1) <= count), 0, free)
