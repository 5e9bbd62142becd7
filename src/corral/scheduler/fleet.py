"""The cluster as arrays: what every node has and what is still free on it.

A :class:`Fleet` is the state the placement policies read and the simulator (later the
scheduler controller) writes. Everything per node is a numpy array indexed by node number, so a
policy filters and scores every node with array operations instead of a Python loop. GPUs are
counted in thousandths ("milli"): 1000 is one whole GPU; a shared GPU has a free amount between
0 and 1000. Nodes with fewer GPUs than the widest node have padding columns that stay at 0 free
and are never chosen, because every GPU request asks for at least 1 milli.

:class:`Task` is one request: CPU, memory, and either nothing of a GPU, a share of one GPU
(``num_gpu == 1`` and ``gpu_milli < 1000``) or ``num_gpu`` whole GPUs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

GPU_MILLI = 1000

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Task:
    """One request to place: CPU in millicores, memory in MiB, GPUs as count × milli each.

    ``gpu_spec`` lists the GPU models the task accepts; empty accepts any. It only restricts
    tasks that ask for a GPU.
    """

    name: str
    cpu_milli: int
    memory_mib: int
    num_gpu: int = 0
    gpu_milli: int = 0
    gpu_spec: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problem = task_problem(self.cpu_milli, self.memory_mib, self.num_gpu, self.gpu_milli)
        if problem:
            raise ValueError(f"task {self.name!r}: {problem}")

    @property
    def gpu_demand_milli(self) -> int:
        """GPU thousandths this task takes when placed (whole GPUs count 1000 each)."""
        return self.num_gpu * self.gpu_milli

    @property
    def shares_gpu(self) -> bool:
        return self.num_gpu == 1 and self.gpu_milli < GPU_MILLI

    @property
    def shape(self) -> tuple[int, int, int, int, tuple[str, ...]]:
        """Everything placement depends on; tasks of one shape are interchangeable."""
        return (self.cpu_milli, self.memory_mib, self.num_gpu, self.gpu_milli, self.gpu_spec)


def task_problem(cpu_milli: int, memory_mib: int, num_gpu: int, gpu_milli: int) -> str:
    """Why these numbers are not a valid task, or "" when they are."""
    if cpu_milli < 0 or memory_mib < 0:
        return "cpu_milli and memory_mib must be >= 0"
    if num_gpu < 0:
        return "num_gpu must be >= 0"
    if num_gpu == 0 and gpu_milli != 0:
        return "gpu_milli must be 0 when num_gpu is 0"
    if num_gpu >= 1 and not 1 <= gpu_milli <= GPU_MILLI:
        return f"gpu_milli must be 1..{GPU_MILLI} when num_gpu >= 1"
    if num_gpu > 1 and gpu_milli != GPU_MILLI:
        return f"a task with num_gpu > 1 takes whole GPUs: gpu_milli must be {GPU_MILLI}"
    return ""


class Placement(NamedTuple):
    """Where a task goes: a node number and the GPU columns it takes (empty for CPU-only)."""

    node: int
    gpus: tuple[int, ...]


@dataclass(eq=False)
class Fleet:
    """Capacity and free resources of every node, one array element per node.

    ``generation[n]`` counts allocations on node ``n``: a policy that caches per-node scores
    recomputes exactly the nodes whose generation moved since it last looked.
    """

    names: tuple[str, ...]
    gpu_models: tuple[str, ...]
    cpu_capacity: IntArray
    mem_capacity: IntArray
    gpu_count: IntArray
    gpu_model: IntArray
    cpu_free: IntArray
    mem_free: IntArray
    gpu_free: IntArray
    full_gpus: IntArray = field(init=False)
    max_gpu_free: IntArray = field(init=False)
    generation: IntArray = field(init=False)
    _model_masks: dict[tuple[str, ...], BoolArray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._model_masks = {}
        self.full_gpus = (self.gpu_free == GPU_MILLI).sum(axis=1).astype(np.int64)
        self.max_gpu_free = self.gpu_free.max(axis=1, initial=0).astype(np.int64)
        self.generation = np.zeros(len(self.names), dtype=np.int64)

    @classmethod
    def create(
        cls,
        names: Sequence[str],
        cpu_milli: Sequence[int],
        memory_mib: Sequence[int],
        gpus: Sequence[int],
        models: Sequence[str],
    ) -> Fleet:
        """An empty fleet from per-node columns (all sequences the same length)."""
        count = len(names)
        if not all(len(col) == count for col in (cpu_milli, memory_mib, gpus, models)):
            raise ValueError("every node column must have one entry per node")
        if count == 0:
            raise ValueError("a fleet needs at least one node")
        if len(set(names)) != count:
            raise ValueError("node names must be unique")
        gpu_count = np.asarray(gpus, dtype=np.int64)
        if (gpu_count < 0).any() or (np.asarray(cpu_milli) < 0).any():
            raise ValueError("node cpu_milli and gpu counts must be >= 0")
        if (np.asarray(memory_mib) < 0).any():
            raise ValueError("node memory_mib must be >= 0")
        model_names = tuple(sorted(set(models)))
        model_index = {name: i for i, name in enumerate(model_names)}
        width = max(int(gpu_count.max()), 1)
        columns = np.arange(width)[None, :]
        gpu_free = np.where(columns < gpu_count[:, None], GPU_MILLI, 0).astype(np.int64)
        cpu = np.asarray(cpu_milli, dtype=np.int64)
        mem = np.asarray(memory_mib, dtype=np.int64)
        return cls(
            names=tuple(names),
            gpu_models=model_names,
            cpu_capacity=cpu,
            mem_capacity=mem,
            gpu_count=gpu_count,
            gpu_model=np.asarray([model_index[m] for m in models], dtype=np.int64),
            cpu_free=cpu.copy(),
            mem_free=mem.copy(),
            gpu_free=gpu_free,
        )

    def __len__(self) -> int:
        return len(self.names)

    def copy(self) -> Fleet:
        """An independent copy of the current state (capacities are shared, never written)."""
        return Fleet(
            names=self.names,
            gpu_models=self.gpu_models,
            cpu_capacity=self.cpu_capacity,
            mem_capacity=self.mem_capacity,
            gpu_count=self.gpu_count,
            gpu_model=self.gpu_model,
            cpu_free=self.cpu_free.copy(),
            mem_free=self.mem_free.copy(),
            gpu_free=self.gpu_free.copy(),
        )

    @property
    def gpu_capacity_milli(self) -> int:
        return int(self.gpu_count.sum()) * GPU_MILLI

    @property
    def gpu_allocated_milli(self) -> int:
        return self.gpu_capacity_milli - int(self.gpu_free.sum())

    def model_mask(self, task: Task) -> BoolArray | None:
        """Nodes whose GPU model the task accepts, or None when it accepts every node."""
        if not task.gpu_spec or task.num_gpu == 0:
            return None
        mask = self._model_masks.get(task.gpu_spec)
        if mask is None:
            wanted = [i for i, name in enumerate(self.gpu_models) if name in task.gpu_spec]
            mask = self._model_masks[task.gpu_spec] = np.isin(self.gpu_model, wanted)
        return mask

    def fits(self, task: Task, rows: IntArray | None = None) -> BoolArray:
        """Which nodes (all, or just ``rows``) can take the task right now."""
        pick: IntArray | slice = slice(None) if rows is None else rows
        ok = (self.cpu_free[pick] >= task.cpu_milli) & (self.mem_free[pick] >= task.memory_mib)
        if task.num_gpu == 0:
            return ok
        if task.shares_gpu:
            ok &= self.max_gpu_free[pick] >= task.gpu_milli
        else:
            ok &= self.full_gpus[pick] >= task.num_gpu
        models = self.model_mask(task)
        if models is not None:
            ok &= models[pick]
        return ok

    def allocate(self, task: Task, placement: Placement) -> None:
        """Take the task's resources on the placement's node and GPUs, or raise if they don't fit.

        The simulator routes every policy's decision through here, so a policy bug shows up as
        an error instead of an over-committed node.
        """
        node, gpus = placement
        if not 0 <= node < len(self.names):
            raise ValueError(f"placement names node {node}, fleet has {len(self.names)}")
        if not self.fits(task, np.asarray([node]))[0]:
            raise ValueError(f"task {task.name!r} does not fit on node {self.names[node]!r}")
        if len(gpus) != task.num_gpu or len(set(gpus)) != len(gpus):
            raise ValueError(f"task {task.name!r} needs {task.num_gpu} distinct GPUs, got {gpus}")
        row = self.gpu_free[node]
        for gpu in gpus:
            if not 0 <= gpu < self.gpu_count[node] or row[gpu] < task.gpu_milli:
                raise ValueError(
                    f"GPU {gpu} on node {self.names[node]!r} cannot take {task.gpu_milli} milli"
                )
        self.cpu_free[node] -= task.cpu_milli
        self.mem_free[node] -= task.memory_mib
        for gpu in gpus:
            row[gpu] -= task.gpu_milli
        self.full_gpus[node] = int((row == GPU_MILLI).sum())
        self.max_gpu_free[node] = int(row.max())
        self.generation[node] += 1
