"""Property: whatever the fleet and tasks, no policy over-commits a GPU, CPU or memory, none
ignores a GPU model restriction, and a task is turned away only when no node can take it.

The checks keep their own books in plain Python, independent of the Fleet's arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.scheduler import GPU_MILLI, Fleet, PolicyContext, Task, make_policy, policy_names

MODELS = ("A", "B")


@dataclass
class Node:
    cpu: int
    mem: int
    model: str
    gpus: list[int] = field(default_factory=list)  # milli used per GPU


nodes_strategy = st.lists(
    st.tuples(
        st.integers(0, 64).map(lambda cores: cores * 1000),
        st.integers(0, 64).map(lambda gib: gib * 1024),
        st.integers(0, 4),
        st.sampled_from(MODELS),
    ),
    min_size=1,
    max_size=5,
)


@st.composite
def tasks_strategy(draw: st.DrawFn) -> list[Task]:
    tasks = []
    for index in range(draw(st.integers(1, 30))):
        cpu = draw(st.integers(0, 32)) * 1000
        mem = draw(st.integers(0, 32)) * 1024
        kind = draw(st.sampled_from(["cpu", "share", "whole"]))
        spec = tuple(sorted(draw(st.sets(st.sampled_from(MODELS), max_size=2))))
        if kind == "cpu":
            tasks.append(Task(f"t{index}", cpu, mem))
        elif kind == "share":
            milli = draw(st.sampled_from([100, 250, 300, 470, 500, 700, 999]))
            tasks.append(Task(f"t{index}", cpu, mem, 1, milli, spec))
        else:
            tasks.append(Task(f"t{index}", cpu, mem, draw(st.integers(1, 4)), GPU_MILLI, spec))
    return tasks


def fits(node: Node, task: Task) -> bool:
    if node.cpu < task.cpu_milli or node.mem < task.memory_mib:
        return False
    if task.num_gpu == 0:
        return True
    if task.gpu_spec and node.model not in task.gpu_spec:
        return False
    room = [GPU_MILLI - used for used in node.gpus]
    if task.shares_gpu:
        return any(free >= task.gpu_milli for free in room)
    return sum(free == GPU_MILLI for free in room) >= task.num_gpu


@settings(max_examples=100, deadline=None)
@given(nodes=nodes_strategy, tasks=tasks_strategy(), seed=st.integers(0, 2**16))
def test_no_policy_overcommits_or_turns_away_a_task_that_fits(
    nodes: list[tuple[int, int, int, str]], tasks: list[Task], seed: int
) -> None:
    for policy_name in policy_names():
        fleet = Fleet.create(
            [f"n{i}" for i in range(len(nodes))],
            [cpu for cpu, _, _, _ in nodes],
            [mem for _, mem, _, _ in nodes],
            [gpus for _, _, gpus, _ in nodes],
            [model for _, _, _, model in nodes],
        )
        books = [Node(cpu, mem, model, [0] * gpus) for cpu, mem, gpus, model in nodes]
        policy = make_policy(
            policy_name, PolicyContext(fleet, tuple(tasks), np.random.default_rng(seed))
        )
        for task in tasks:
            placement = policy.place(task)
            if placement is None:
                assert not any(fits(node, task) for node in books), (policy_name, task)
                continue
            node = books[placement.node]
            assert fits(node, task), (policy_name, task, placement)
            assert len(set(placement.gpus)) == task.num_gpu == len(placement.gpus)
            for gpu in placement.gpus:
                if not task.shares_gpu:
                    assert node.gpus[gpu] == 0, (policy_name, task, placement)
                node.gpus[gpu] += task.gpu_milli
                assert node.gpus[gpu] <= GPU_MILLI
            node.cpu -= task.cpu_milli
            node.mem -= task.memory_mib
            assert node.cpu >= 0
            assert node.mem >= 0
            fleet.allocate(task, placement)
        for index, node in enumerate(books):
            assert fleet.cpu_free[index] == node.cpu
            assert fleet.mem_free[index] == node.mem
            width = len(node.gpus)
            assert list(fleet.gpu_free[index][:width]) == [GPU_MILLI - u for u in node.gpus]
