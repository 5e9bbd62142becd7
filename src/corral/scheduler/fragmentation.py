"""GPU fragmentation of node states, measured against a task mix (the FGD paper's definition).

A node's unallocated GPU capacity is a fragment with respect to a task shape when that shape
cannot use it there: the shape asks for no GPU, the node's GPU model is not accepted, too little
CPU or memory is left, or fewer than ``num_gpu`` GPUs have ``gpu_milli`` free. When the shape
does fit, only the GPUs with less than ``gpu_milli`` free are fragments. The expected
fragmentation weights each shape by its share of the mix.

:class:`FragMeter` evaluates a whole batch of (possibly hypothetical) node states with array
operations; the FGD policy, the corral policy and the simulator's final report all use it.
"""

from __future__ import annotations

import numpy as np

from corral.scheduler.fleet import Fleet, IntArray
from corral.scheduler.workload import FloatArray, TaskMix


class FragMeter:
    """Expected fragmented GPU milli of node states under one task mix."""

    def __init__(self, mix: TaskMix) -> None:
        gpu = mix.gpu_milli > 0
        # Shapes share few distinct gpu_milli values: count free GPUs once per distinct value.
        self._thresholds, self._column = np.unique(mix.gpu_milli[gpu], return_inverse=True)
        self._num_gpu = mix.num_gpu[gpu]
        self._cpu = mix.cpu_milli[gpu]
        self._mem = mix.memory_mib[gpu]
        self._model_ok = mix.model_ok[:, gpu]
        self._weight = mix.weight[gpu]

    def amount(self, cpu: IntArray, mem: IntArray, model: IntArray, free: IntArray) -> FloatArray:
        """Expected fragmented milli of each state: per-node arrays plus per-GPU free (B, G)."""
        total: FloatArray = free.sum(axis=1).astype(np.float64)
        if self._weight.size == 0:
            return total
        at_least = free[:, :, None] >= self._thresholds
        usable_milli = (free[:, :, None] * at_least).sum(axis=1)[:, self._column]
        usable_count = at_least.sum(axis=1)[:, self._column]
        fits = (
            (usable_count >= self._num_gpu)
            & (cpu[:, None] >= self._cpu)
            & (mem[:, None] >= self._mem)
            & self._model_ok[model]
        )
        return np.asarray(total - (fits * usable_milli) @ self._weight, dtype=np.float64)

    def of_nodes(self, fleet: Fleet, rows: IntArray) -> FloatArray:
        """Expected fragmented milli of the fleet's nodes ``rows`` as they are now."""
        return self.amount(
            fleet.cpu_free[rows], fleet.mem_free[rows], fleet.gpu_model[rows], fleet.gpu_free[rows]
        )


def fragmentation_ratio(fleet: Fleet, mix: TaskMix) -> float:
    """Percent of the fleet's unallocated GPU capacity that is fragmented under ``mix``."""
    idle = float(fleet.gpu_free.sum())
    if idle == 0:
        return 0.0
    rows = np.arange(len(fleet))
    return 100.0 * float(FragMeter(mix).of_nodes(fleet, rows).sum()) / idle
