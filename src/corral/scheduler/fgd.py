"""FGD, "Fragmentation Gradient Descent" (Weng et al., USENIX ATC'23), as its simulator runs it.

The reference the corral policy is measured against, kept faithful to the authors' code:

- the target workload is the trace's "typical pods": task shapes by (CPU, GPU milli, GPU count,
  GPU models), memory ignored, most frequent first until they cover 95% of the trace, CPU-only
  shapes included, renormalised;
- a node's fragmentation counts CPU and GPUs only (not memory);
- the score of a node is ``int(100 * sigmoid((frag_before - frag_after) / 1000))``; a share is
  tried on every GPU with room and the node keeps its best GPU (the first of equal scores);
- equal node scores go to the first node in the run's random node order (the simulator's
  seeded node-name prefixes; see :class:`ScoringPolicy`).
"""

from __future__ import annotations

import numpy as np

from corral.scheduler.fleet import GPU_MILLI, IntArray, Task
from corral.scheduler.fragmentation import FragMeter
from corral.scheduler.policy import (
    PolicyContext,
    ScoringPolicy,
    best_candidate_per_node,
    share_candidates,
    without_whole_gpus,
)
from corral.scheduler.workload import FloatArray, TaskMix

TYPICAL_COVERAGE = 0.95


class FGDPolicy(ScoringPolicy):
    def __init__(self, context: PolicyContext) -> None:
        super().__init__(context)
        mix = TaskMix.from_tasks(
            context.trace, self.fleet, coverage=TYPICAL_COVERAGE, with_memory=False
        )
        self.meter = FragMeter(mix)
        size = len(self.fleet)
        self._frag: FloatArray = np.zeros(size)
        self._frag_seen: IntArray = np.full(size, -1, dtype=np.int64)

    def current_frag(self, rows: IntArray) -> FloatArray:
        """Fragmentation of nodes ``rows`` as they are, recomputed only where they changed."""
        generation = self.fleet.generation
        stale = rows[self._frag_seen[rows] != generation[rows]]
        if stale.size:
            self._frag[stale] = self.meter.of_nodes(self.fleet, stale)
            self._frag_seen[stale] = generation[stale]
        return self._frag[rows]

    def score(self, task: Task, rows: IntArray) -> tuple[FloatArray, IntArray]:
        fleet = self.fleet
        before = self.current_frag(rows)
        cpu = fleet.cpu_free[rows] - task.cpu_milli
        mem = fleet.mem_free[rows] - task.memory_mib
        model = fleet.gpu_model[rows]
        free = fleet.gpu_free[rows]
        if task.shares_gpu:
            node, gpu = share_candidates(free, task.gpu_milli)
            after_free = free[node]
            after_free[np.arange(node.size), gpu] -= task.gpu_milli
            after = self.meter.amount(cpu[node], mem[node], model[node], after_free)
            return best_candidate_per_node(node, gpu, fgd_score(before[node] - after))
        if task.num_gpu:
            free = without_whole_gpus(free, task.num_gpu)
        after = self.meter.amount(cpu, mem, model, free)
        return fgd_score(before - after), np.full(rows.size, -1, dtype=np.int64)


def fgd_score(frag_drop: FloatArray) -> FloatArray:
    """The simulator's integer score: 100 × sigmoid(drop in fragmented GPUs), truncated."""
    return np.trunc(100.0 / (1.0 + np.exp(-frag_drop / GPU_MILLI)))


def fgd_policy(context: PolicyContext) -> FGDPolicy:
    return FGDPolicy(context)
