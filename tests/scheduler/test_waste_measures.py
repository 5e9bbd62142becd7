"""The fragmentation measure (FGD's definition) and the look-ahead waste on states whose answer
can be worked out by hand."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from corral.scheduler import Fleet, Placement, Task
from corral.scheduler.fragmentation import FragMeter, fragmentation_ratio
from corral.scheduler.lookahead import sliver_waste
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
