"""The fragmentation measure (FGD's definition) and the look-ahead waste on states whose answer
can be worked out by hand."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from corral.scheduler import Fleet, Placement, Task
from corral.scheduler.fragmentation import FragMeter, fragmentation_ratio
from corral.scheduler.lookahead import (
    SLIVER_PATIENCE_LOSS,
    competition_odds,
    filling_waste,
    sliver_waste,
)
from corral.scheduler.workload import TaskMix

FleetFactory = Callable[..., Fleet]


def frag_of(fleet: Fleet, tasks: list[Task]) -> list[float]:
    meter = FragMeter(TaskMix.from_tasks(tasks, fleet))
    return [float(x) for x in meter.of_nodes(fleet, np.arange(len(fleet)))]


def test_only_gpus_a_task_cannot_use_are_fragments(fleet_of: FleetFactory) -> None:
    fleet = fleet_of((32000, 65536, 2, "T4"))
    fleet.allocate(Task("x", 1000, 1024, 1, 810), Placement(0, (1,)))  # GPUs: 1000, 190 free
    share, cpu_only = Task("s", 1000, 1024, 1, 810), Task("c", 1000, 1024)
    # The 810 share fits GPU 0, so only GPU 1's 190 is a fragment for it; a CPU-only task
    # can use no GPU at all, so all 1190 are. Each shape weighs a half.
    assert frag_of(fleet, [share, cpu_only]) == [pytest.approx(0.5 * 190 + 0.5 * 1190)]


def test_a_node_short_of_cpu_memory_or_model_is_all_fragment(fleet_of: FleetFactory) -> None:
    fleet = fleet_of((4000, 65536, 2, "T4"), (32000, 4096, 2, "T4"), (32000, 65536, 2, "A10"))
    wants = Task("w", 8000, 8192, 1, 500, ("T4", "V100M16"))
    assert frag_of(fleet, [wants]) == [2000.0, 2000.0, 2000.0]
    fits_all = Task("f", 1000, 1024, 1, 500)
    assert frag_of(fleet, [fits_all]) == [0.0, 0.0, 0.0]


def test_too_few_whole_gpus_fragment_the_node(fleet_of: FleetFactory) -> None:
    fleet = fleet_of((96000, 393216, 4, "G2"))
    fleet.allocate(Task("x", 1000, 1024, 1, 1000), Placement(0, (0,)))
    assert frag_of(fleet, [Task("q", 8000, 8192, 4, 1000)]) == [3000.0]
    assert frag_of(fleet, [Task("p", 8000, 8192, 3, 1000)]) == [0.0]


def test_the_fleet_ratio_is_the_fragmented_share_of_idle_gpu(fleet_of: FleetFactory) -> None:
    fleet = fleet_of((32000, 65536, 1, "T4"), (32000, 65536, 1, "T4"))
    fleet.allocate(Task("x", 1000, 1024, 1, 800), Placement(0, (0,)))  # idle: 200 + 1000
    mix = TaskMix.from_tasks([Task("s", 1000, 1024, 1, 500)], fleet)
    assert fragmentation_ratio(fleet, mix) == pytest.approx(100 * 200 / 1200)


def test_sliver_waste_follows_the_mix(fleet_of: FleetFactory) -> None:
    fleet = fleet_of((32000, 65536, 1, "T4"))
    halves = TaskMix.from_tasks([Task("h", 1000, 1024, 1, 500)], fleet)
    waste = sliver_waste(halves, loss=0.5)
    # Only 500s arrive and every one fits until less than 500 is left: that much is wasted.
    assert [waste[f] for f in (1000, 999, 500, 499, 0)] == [0, 499, 0, 499, 0]
    mixed = TaskMix.from_tasks(
        [Task("a", 1000, 1024, 1, 800), Task("b", 1000, 1024, 1, 1000)], fleet
    )
    # A fresh GPU gets an 800 (leaving 200 nothing fits) or a whole-GPU task, half and half.
    assert sliver_waste(mixed, loss=0.0)[1000] == pytest.approx(100.0)
    # With 900 free only the 800 fits; the other half of arrivals give up on it at rate `loss`.
    assert sliver_waste(mixed, loss=1.0)[900] == pytest.approx(0.5 * 100 + 0.5 * 900)
    assert sliver_waste(mixed, loss=0.0)[900] == pytest.approx(100.0)


def test_rare_fillers_are_shared_among_the_slivers_that_want_them() -> None:
    milli, weight = np.array([800, 200]), np.array([0.5, 0.5])
    # loss 1: a GPU with f < 1000 free gives up when a task it cannot take arrives. One fresh
    # GPU's chain consumes 0.75 tasks of 800 (0.5 open it, 0.25 follow a 200) and 1.21875 of
    # 200 (0.5 + 0.25 + 0.25 + 0.125 + 0.0625 + 0.03125), while they arrive half and half: a
    # 200 is there for this GPU at 0.5 / (1.21875 / 1.96875); the 800s are never short.
    odds = competition_odds(milli, weight, 1.0)
    assert odds == pytest.approx([1.0, 0.5 * 1.96875 / 1.21875])


def test_slivers_beside_large_shares_are_priced_by_their_fill_odds(fleet_of: FleetFactory) -> None:
    fleet = fleet_of((32000, 65536, 1, "T4"))
    tasks = [Task(f"l{i}", 1000, 1024, 1, 810) for i in range(9)] + [Task("s", 1000, 1024, 1, 160)]
    mix = TaskMix.from_tasks(tasks, fleet)
    milli, weight = np.array([810, 160]), np.array([0.9, 0.1])
    odds = competition_odds(milli, weight, SLIVER_PATIENCE_LOSS)
    # Nine 190 slivers for every 160 that arrives: the 160s are scarce, the 810s are not.
    assert odds[0] == 1.0
    assert odds[1] < 0.25
    waste = sliver_waste(mix)
    naive = filling_waste(milli, weight, SLIVER_PATIENCE_LOSS)
    np.testing.assert_allclose(waste, filling_waste(milli, weight * odds, SLIVER_PATIENCE_LOSS))
    # So the 190 sliver an 810 leaves, and the fresh GPU the 810s mostly open, are worth more
    # waste than if every sliver could count on the next 160.
    assert waste[190] > naive[190] + 20
    assert waste[1000] > naive[1000] + 20
