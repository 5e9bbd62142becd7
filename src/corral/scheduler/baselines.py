"""The baseline policies of the FGD paper, as its simulator implements them.

- ``random``: any node the task fits on, uniformly; a share goes to a uniformly chosen GPU
  with room.
- ``bestfit``: the node left with the least CPU and GPU after placing, each normalised by the
  largest node (128 cores, 8 GPUs) and weighted half and half; the score is truncated to an
  integer 0..100 as kube-scheduler scores are; equal scores go to the first node in the run's
  random node order (see :class:`ScoringPolicy`). A share
  goes to the GPU with the least room that still holds it.

Both ignore the workload. They exist to check the simulator against the published numbers.
"""

from __future__ import annotations

import numpy as np

from corral.scheduler.fleet import IntArray, Task
from corral.scheduler.policy import PolicyContext, ScoringPolicy, best_fit_gpu
from corral.scheduler.workload import FloatArray

# The simulator's normalisers for BestFit (its MaxSpecCpu and MaxSpecGpu).
MAX_SPEC_CPU_MILLI = 128_000
MAX_SPEC_GPU_MILLI = 8_000


class RandomPolicy(ScoringPolicy):
    def score(self, task: Task, rows: IntArray) -> tuple[FloatArray, IntArray]:
        del task  # every node that fits is as good as any other
        return np.zeros(rows.size), np.full(rows.size, -1, dtype=np.int64)

    def break_tie(self, task: Task, nodes: IntArray) -> int:
        del task
        return int(nodes[self.rng.integers(nodes.size)])

    def pick_gpus(self, task: Task, node: int, hint: int) -> tuple[int, ...]:
        if not task.shares_gpu:
            return super().pick_gpus(task, node, hint)
        room = np.flatnonzero(self.fleet.gpu_free[node] >= task.gpu_milli)
        return (int(room[self.rng.integers(room.size)]),)


class BestFitPolicy(ScoringPolicy):
    def score(self, task: Task, rows: IntArray) -> tuple[FloatArray, IntArray]:
        fleet = self.fleet
        cpu_left = fleet.cpu_free[rows] - task.cpu_milli
        gpu_left = fleet.gpu_free[rows].sum(axis=1) - task.gpu_demand_milli
        waste = 0.5 * cpu_left / MAX_SPEC_CPU_MILLI + 0.5 * gpu_left / MAX_SPEC_GPU_MILLI
        score = np.trunc((1.0 - waste) * 100.0)
        gpu = (
            best_fit_gpu(fleet, rows, task.gpu_milli)
            if task.shares_gpu
            else np.full(rows.size, -1, dtype=np.int64)
        )
        return score, gpu


def random_policy(context: PolicyContext) -> RandomPolicy:
    return RandomPolicy(context)


def bestfit_policy(context: PolicyContext) -> BestFitPolicy:
    return BestFitPolicy(context)
