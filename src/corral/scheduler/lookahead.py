"""corral's default placement policy: fragmentation gradient plus a look-ahead on what is left.

A node is scored by how much a placement lowers its *expected waste*, the GPU capacity it will
probably never allocate, estimated from the tasks seen so far. Two estimates are added, both in
GPU milli:

- a look-ahead on the rest (:func:`sliver_waste`, :meth:`MixModel.waste`): each GPU's
  free milli is expected to be filled by future tasks drawn from the mix, so only the sliver
  they would leave counts; and the node's CPU and memory must last for that filling, at the
  mix's GPU-per-CPU and GPU-per-memory rates, or the rest is stranded. A filling task counts
  only at the odds that other GPUs have not taken it first (:func:`competition_odds`): the
  few small shares that fit the slivers large shares leave are shared among many of them;
- FGD's one-step fragmentation (:class:`FragMeter`), memory included, but only against the
  multi-GPU shapes of the mix (each at its share of the whole mix): the per-GPU look-ahead
  cannot see that such a task needs several free GPUs on one node. Measured against every
  shape it would count a sliver a second time (the look-ahead already prices it), and that
  double count cost 0.5 points on the gpushare100 trace.

The mix is learned online, from the tasks submitted so far (never from the trace file), and
refreshed whenever the number seen has doubled since the last refresh. Equal scores go to the
node with the smallest share of its GPU capacity free (best fit: a CPU-only task lands where the
GPUs are already taken, a share next to other shares; measured as a share so that a half-used
8-GPU node is fuller than an untouched 2-GPU one and small nodes are not broken first just for
having fewer GPUs), then to the first node of a per-run random order, which packs consolidated
the way first-fit does. A share is tried on every GPU with room; the node keeps its best GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from corral.scheduler.fleet import GPU_MILLI, IntArray, Placement, Task
from corral.scheduler.fragmentation import FragMeter
from corral.scheduler.policy import (
    PolicyContext,
    ScoringPolicy,
    best_candidate_per_node,
    share_candidates,
    without_whole_gpus,
)
from corral.scheduler.workload import FloatArray, TaskMix

# Odds that a free sliver is given up on each time a task arrives that does not fill it (it does
# not fit, or it fits but goes to another GPU first). With 0 every sliver is assumed to be
# filled eventually, however rare the tasks that fit it; with 1 the first task that does not
# fill it ends its chances. One global constant, never set per trace. Scarce fillers are priced
# by their competition odds (:func:`competition_odds`), so the patience only stands for the run
# ending. 0 is not safe (a sliver that tasks rarely fill looks as good as filled: 3.6 points
# lost on gpushare100, 0.5 on default). Across 0.005..0.01 the three openb traces move by under
# 0.35 points (gpushare100 gains as default loses), and across 0.005..0.0075 the held-out
# workloads of benchmarks/sched_bench.py by under 0.1.
SLIVER_PATIENCE_LOSS = 0.0075
# Refresh the learned mix when the number of tasks seen has grown by this factor.
REFIT_GROWTH = 2.0


def sliver_waste(mix: TaskMix, loss: float = SLIVER_PATIENCE_LOSS) -> FloatArray:
    """Expected never-allocated milli of one GPU, indexed by its free milli (0..1000).

    Future GPU tasks arrive with the mix's frequencies; one that fits and is still there to
    take (its kind's :func:`competition_odds`) takes its share of the GPU (a whole-GPU task
    takes a fully free GPU); any other arrival ends the GPU's filling with probability
    ``loss``. A fully free GPU is never given up: it goes to whichever task opens it, and
    those are mostly the kinds that other GPUs leave over, so its value is the waste of
    what they leave (the 190-milli sliver of an 810-milli share, say), not of an average task.
    """
    gpu = mix.gpu_milli > 0
    milli = mix.gpu_milli[gpu]
    weight = mix.weight[gpu]
    if weight.sum() == 0:
        return np.arange(GPU_MILLI + 1, dtype=np.float64)
    weight = weight / weight.sum()
    return filling_waste(milli, weight * competition_odds(milli, weight, loss), loss)


def filling_waste(milli: IntArray, reach: FloatArray, loss: float) -> FloatArray:
    """Expected waste per free milli when a task of size ``milli[k]`` comes to fill a GPU
    with probability ``reach[k]`` per arrival (see :func:`sliver_waste`)."""
    waste = np.arange(GPU_MILLI + 1, dtype=np.float64)
    # waste[f] depends only on waste[f - m] for shapes that fit, so a block of free values
    # narrower than the smallest share depends only on blocks below it: solve block by block.
    step = int(milli.min())
    for start in range(step, GPU_MILLI + 1, step):
        free = np.arange(start, min(start + step, GPU_MILLI + 1))
        fits = milli[None, :] <= free[:, None]
        fitting = (fits * reach).sum(axis=1)
        below = waste[np.where(fits, free[:, None] - milli[None, :], 0)]
        filled = (fits * below) @ reach
        stop = np.where(free == GPU_MILLI, 0.0, loss * (1.0 - fitting))
        solved = fitting > 0
        waste[free[solved]] = (filled[solved] + stop[solved] * free[solved]) / (
            fitting[solved] + stop[solved]
        )
    return waste


def competition_odds(milli: IntArray, weight: FloatArray, loss: float) -> FloatArray:
    """Per task kind, the odds that an arriving task is still there for a given GPU to take.

    Follow one freshly opened GPU down its filling chain (any fitting task taken) and count
    the tasks of each kind it consumes. Over the fleet each task lands once, so a kind the
    chains consume more often than it arrives, relative to all tasks consumed, is shared among
    several GPUs that want it, and each gets it at that ratio. The small shares that fill the
    slivers beside large shares are the usual case: 810-milli shares leave a 190-milli sliver
    far more often than 160-milli shares arrive to fill one.
    """
    visits = np.zeros(GPU_MILLI + 1)
    visits[GPU_MILLI] = 1.0
    consumed = np.zeros_like(weight)
    for free in range(GPU_MILLI, 0, -1):
        if visits[free] == 0.0:
            continue
        fits = milli <= free
        fitting = float(weight[fits].sum())
        if fitting == 0.0:
            continue
        stop = 0.0 if free == GPU_MILLI else loss * (1.0 - fitting)
        take = np.where(fits, weight, 0.0) * (visits[free] / (fitting + stop))
        consumed += take
        np.add.at(visits, free - milli[fits], take[fits])
    wanted = consumed / consumed.sum()
    return np.asarray(np.minimum(1.0, weight / np.maximum(wanted, 1e-12)), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class MixModel:
    """What the policy has learned about the workload: everything its scores depend on."""

    meter: FragMeter
    waste_of_free: FloatArray
    gpu_per_cpu: float
    gpu_per_mem: float

    @classmethod
    def learn(cls, mix: TaskMix) -> MixModel:
        gpu = mix.gpu_milli > 0
        demand = float((mix.weight * mix.gpu_milli * mix.num_gpu)[gpu].sum())
        cpu = float((mix.weight * mix.cpu_milli)[gpu].sum())
        mem = float((mix.weight * mix.memory_mib)[gpu].sum())
        multi_gpu = mix.num_gpu > 1
        return cls(
            meter=FragMeter(replace(mix, weight=np.where(multi_gpu, mix.weight, 0.0))),
            waste_of_free=sliver_waste(mix),
            gpu_per_cpu=demand / cpu if cpu else 0.0,
            gpu_per_mem=demand / mem if mem else 0.0,
        )

    def waste(self, cpu: IntArray, mem: IntArray, free: IntArray) -> FloatArray:
        """Look-ahead waste of node states: free GPU milli that future tasks will not take."""
        total: FloatArray = free.sum(axis=1).astype(np.float64)
        fillable: FloatArray = (free - self.waste_of_free[free]).sum(axis=1)
        # A rate of 0 means the GPU tasks seen need none of it, so it cannot run out.
        if self.gpu_per_cpu:
            fillable = np.minimum(fillable, cpu * self.gpu_per_cpu)
        if self.gpu_per_mem:
            fillable = np.minimum(fillable, mem * self.gpu_per_mem)
        return total - fillable

    def badness(self, cpu: IntArray, mem: IntArray, model: IntArray, free: IntArray) -> FloatArray:
        """Expected waste of node states: fragmented now plus wasted later, in GPU milli."""
        return self.meter.amount(cpu, mem, model, free) + self.waste(cpu, mem, free)


class LookaheadPolicy(ScoringPolicy):
    """Place where the expected waste drops most; the mix is relearned as tasks arrive."""

    def __init__(self, context: PolicyContext) -> None:
        super().__init__(context)
        size = len(self.fleet)
        self._seen: list[Task] = []
        self._fitted_at = 0
        self._model: MixModel | None = None
        self._badness: FloatArray = np.zeros(size)
        self._badness_seen: IntArray = np.full(size, -1, dtype=np.int64)

    @property
    def model(self) -> MixModel:
        if self._model is None:
            raise RuntimeError("the lookahead policy has not seen a task yet")
        return self._model

    def place(self, task: Task) -> Placement | None:
        self._seen.append(task)
        if len(self._seen) >= REFIT_GROWTH * self._fitted_at:
            self._fitted_at = len(self._seen)
            self._model = MixModel.learn(TaskMix.from_tasks(self._seen, self.fleet))
            self._badness_seen[:] = -1
            self.forget_scores()
        return super().place(task)

    def break_tie(self, task: Task, nodes: IntArray) -> int:
        if nodes.size == 1:
            return int(nodes[0])
        fleet = self.fleet
        # Compare free/count as free_a * count_b < free_b * count_a: integers, exact equality.
        free = fleet.gpu_free[nodes].sum(axis=1)
        count = np.maximum(fleet.gpu_count[nodes], 1)
        lowest = np.argmin(free / count)
        fullest = free * count[lowest] == free[lowest] * count
        return super().break_tie(task, nodes[fullest])

    def current_badness(self, rows: IntArray) -> FloatArray:
        generation = self.fleet.generation
        stale = rows[self._badness_seen[rows] != generation[rows]]
        if stale.size:
            fleet = self.fleet
            self._badness[stale] = self.model.badness(
                fleet.cpu_free[stale],
                fleet.mem_free[stale],
                fleet.gpu_model[stale],
                fleet.gpu_free[stale],
            )
            self._badness_seen[stale] = generation[stale]
        return self._badness[rows]

    def score(self, task: Task, rows: IntArray) -> tuple[FloatArray, IntArray]:
        fleet = self.fleet
        before = self.current_badness(rows)
        cpu = fleet.cpu_free[rows] - task.cpu_milli
        mem = fleet.mem_free[rows] - task.memory_mib
        model = fleet.gpu_model[rows]
        free = fleet.gpu_free[rows]
        if task.shares_gpu:
            node, gpu = share_candidates(free, task.gpu_milli)
            after_free = free[node]
            after_free[np.arange(node.size), gpu] -= task.gpu_milli
            after = self.model.badness(cpu[node], mem[node], model[node], after_free)
            return best_candidate_per_node(node, gpu, before[node] - after)
        if task.num_gpu:
            free = without_whole_gpus(free, task.num_gpu)
        after = self.model.badness(cpu, mem, model, free)
        return before - after, np.full(rows.size, -1, dtype=np.int64)


def lookahead_policy(context: PolicyContext) -> LookaheadPolicy:
    return LookaheadPolicy(context)
