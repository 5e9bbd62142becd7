"""The default (look-ahead) policy's own choices: what its fragmentation term counts, and where
equal scores go."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from corral.scheduler import GPU_MILLI, Fleet, Placement, PolicyContext, Task, make_policy
from corral.scheduler.lookahead import MixModel
from corral.scheduler.workload import TaskMix

FleetFactory = Callable[..., Fleet]


def states(*free: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """cpu, mem, model, per-GPU free for nodes with plenty of CPU and memory."""
    count = len(free)
    cpu = np.full(count, 96_000, dtype=np.int64)
    mem = np.full(count, 393_216, dtype=np.int64)
    return cpu, mem, np.zeros(count, dtype=np.int64), np.asarray(free, dtype=np.int64)


def test_single_gpu_shapes_are_priced_by_the_look_ahead_only(fleet_of: FleetFactory) -> None:
    fleet = fleet_of((96_000, 393_216, 2, "T4"))
    model = MixModel.learn(
        TaskMix.from_tasks([Task("a", 1000, 1024, 1, 810), Task("b", 1000, 1024, 1, 470)], fleet)
    )
    cpu, mem, gpu_model, free = states([190, 1000], [530, 1000], [1000, 1000])
    # No multi-GPU shape: the one-step term is the free milli itself, the same for any layout
    # of it, so a sliver is not counted twice.
    np.testing.assert_array_equal(model.meter.amount(cpu, mem, gpu_model, free), free.sum(axis=1))
    waste = model.badness(cpu, mem, gpu_model, free) - free.sum(axis=1)
    np.testing.assert_allclose(waste, model.waste(cpu, mem, free))
    # 190 free fits neither shape: all of it is waste; 530 free still fits the 470s.
    whole = model.waste_of_free[GPU_MILLI]
    assert waste[0] == pytest.approx(190 + whole)
    assert waste[1] == pytest.approx(model.waste_of_free[530] + whole)
    assert waste[1] < waste[0]


def test_a_node_that_cannot_take_a_multi_gpu_shape_counts_as_fragmented(
    fleet_of: FleetFactory,
) -> None:
    fleet = fleet_of((96_000, 393_216, 8, "G2"))
    mix = TaskMix.from_tasks(
        [Task("one", 1000, 1024, 1, GPU_MILLI), Task("eight", 8000, 8192, 8, GPU_MILLI)], fleet
    )
    model = MixModel.learn(mix)
    cpu, mem, gpu_model, free = states([GPU_MILLI] * 8, [0] + [GPU_MILLI] * 7)
    fragmented = model.meter.amount(cpu, mem, gpu_model, free) - free.sum(axis=1)
    # Eight free GPUs fit the 8-GPU shape (half the mix): its 8000 milli are usable.
    assert fragmented[0] == pytest.approx(-0.5 * 8 * GPU_MILLI)
    # Seven do not: nothing is usable by it.
    assert fragmented[1] == pytest.approx(0.0)


@pytest.mark.parametrize("seed", range(6))
def test_a_cpu_only_task_goes_where_the_gpus_are_already_taken(
    seed: int, fleet_of: FleetFactory
) -> None:
    # Every node scores the same for a CPU-only task that strands nothing; the best fit by GPU
    # keeps the nodes with free GPUs whole, whatever the run's random node order.
    fleet = fleet_of(*[(64_000, 262_144, 2, "T4")] * 4)
    fleet.allocate(Task("x", 1000, 1024, 2, GPU_MILLI), Placement(2, (0, 1)))
    policy = make_policy("default", PolicyContext(fleet, (), np.random.default_rng(seed)))
    policy.place(Task("seen", 1000, 1024, 1, 500))  # the mix needs a GPU task to be learned
    assert policy.place(Task("c", 2000, 2048)) == Placement(2, ())


@pytest.mark.parametrize("seed", range(6))
def test_equal_scores_for_a_share_go_to_the_fuller_node(seed: int, fleet_of: FleetFactory) -> None:
    fleet = fleet_of(*[(64_000, 262_144, 2, "T4")] * 3)
    fleet.allocate(Task("x", 1000, 1024, 1, GPU_MILLI), Placement(1, (0,)))
    policy = make_policy("default", PolicyContext(fleet, (), np.random.default_rng(seed)))
    assert policy.place(Task("s", 1000, 1024, 1, 500)) == Placement(1, (1,))


@pytest.mark.parametrize("seed", range(6))
def test_equal_scores_go_to_the_node_with_the_smaller_share_of_its_gpus_free(
    seed: int, fleet_of: FleetFactory
) -> None:
    # A share scores the same on a fresh GPU of either node. The 8-GPU node has more free milli
    # (4000 against 2000) but only half of it free; the untouched 2-GPU node stays whole.
    fleet = fleet_of((64_000, 262_144, 2, "T4"), (96_000, 393_216, 8, "T4"))
    fleet.allocate(Task("x", 1000, 1024, 4, GPU_MILLI), Placement(1, (0, 1, 2, 3)))
    policy = make_policy("default", PolicyContext(fleet, (), np.random.default_rng(seed)))
    assert policy.place(Task("s", 1000, 1024, 1, 500)) == Placement(1, (4,))
