"""Workloads: the task-shape mix a policy plans for, and the paper's "workload inflation".

:class:`TaskMix` is a probability distribution over task shapes held as arrays (one element per
shape) so fragmentation can be measured against every shape at once. It is built from a list of
tasks: the whole trace, the top shapes only (FGD's "typical pods"), or just the tasks a policy
has seen so far.

:func:`inflate` builds the arrival sequence of one simulation run the way the FGD simulator
does: the trace in a seeded random order, then topped up with random draws from the trace (or
thinned by random removals) until the GPU demand submitted reaches ``ratio`` × capacity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from corral.scheduler.fleet import BoolArray, Fleet, IntArray, Task

FloatArray = NDArray[np.float64]
Shape = tuple[int, int, int, int, tuple[str, ...]]


@dataclass(frozen=True, eq=False)
class TaskMix:
    """Task shapes and how likely each is, as parallel arrays.

    ``model_ok[g, t]`` says whether shape ``t`` accepts GPU model ``g`` of the fleet the mix was
    bound to. CPU-only shapes have ``gpu_milli == 0``.
    """

    cpu_milli: IntArray
    memory_mib: IntArray
    num_gpu: IntArray
    gpu_milli: IntArray
    weight: FloatArray
    model_ok: BoolArray

    @classmethod
    def from_shapes(cls, counts: dict[Shape, float], fleet: Fleet) -> TaskMix:
        """A mix from shape → count (any positive scale); shapes in the given order."""
        shapes = list(counts)
        if not shapes:
            raise ValueError("a task mix needs at least one shape")
        total = float(sum(counts.values()))
        model_ok = np.ones((max(len(fleet.gpu_models), 1), len(shapes)), dtype=bool)
        for t, shape in enumerate(shapes):
            spec, num_gpu = shape[4], shape[2]
            if spec and num_gpu:
                model_ok[:, t] = [name in spec for name in fleet.gpu_models]

        def column(field: int) -> IntArray:
            return np.asarray([shape[field] for shape in shapes], dtype=np.int64)

        return cls(
            cpu_milli=column(0),
            memory_mib=column(1),
            num_gpu=column(2),
            gpu_milli=column(3),
            weight=np.asarray([counts[s] / total for s in shapes], dtype=np.float64),
            model_ok=model_ok,
        )

    @classmethod
    def from_tasks(
        cls,
        tasks: Iterable[Task],
        fleet: Fleet,
        *,
        coverage: float = 1.0,
        with_memory: bool = True,
    ) -> TaskMix:
        """The shape frequencies of ``tasks``.

        ``coverage`` < 1 keeps only the most frequent shapes until they account for that share
        of the tasks, then renormalises (FGD's typical pods use 0.95). ``with_memory=False``
        merges shapes that differ only in memory and ignores memory, as FGD does.
        """
        counts: Counter[Shape] = Counter()
        for task in tasks:
            mem = task.memory_mib if with_memory else 0
            counts[(task.cpu_milli, mem, task.num_gpu, task.gpu_milli, task.gpu_spec)] += 1
        total = sum(counts.values())
        # FGD's order: most frequent first; equal counts by larger resources first.
        ordered = sorted(counts.items(), key=lambda item: (item[1], item[0]), reverse=True)
        kept: dict[Shape, float] = {}
        covered = 0
        for shape, count in ordered:
            if covered >= coverage * total:
                break
            kept[shape] = count
            covered += count
        return cls.from_shapes(kept, fleet)

    def __len__(self) -> int:
        return len(self.weight)


def gpu_demand(tasks: Iterable[Task]) -> int:
    return sum(task.gpu_demand_milli for task in tasks)


def inflate(
    trace: Sequence[Task], capacity_milli: int, ratio: float, rng: np.random.Generator
) -> list[Task]:
    """The arrival order for one run: GPU demand submitted ends at ``ratio`` × capacity.

    As in the FGD simulator: shuffle the trace; if its demand is below the target, append random
    draws from the trace until the next draw would pass the target; if above, remove random
    tasks until it no longer is.
    """
    if not trace:
        raise ValueError("cannot inflate an empty trace")
    if ratio <= 0:
        raise ValueError("inflation ratio must be > 0")
    target = ratio * capacity_milli
    order = [trace[int(i)] for i in rng.permutation(len(trace))]
    demand = gpu_demand(order)
    if demand > target:
        while demand > target:
            removed = order.pop(int(rng.integers(len(order))))
            demand -= removed.gpu_demand_milli
        return order
    if gpu_demand(trace) == 0:
        return order
    while True:
        draw = trace[int(rng.integers(len(trace)))]
        if demand + draw.gpu_demand_milli > target:
            return order
        order.append(draw)
        demand += draw.gpu_demand_milli
