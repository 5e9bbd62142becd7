"""Hand-made fleets where only one placement is right: every policy must find it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from corral.scheduler import Fleet, Placement, PolicyContext, Task, make_policy, policy_names

FleetFactory = Callable[..., Fleet]
BUILTIN_POLICIES = policy_names()


def place(policy: str, fleet: Fleet, task: Task, trace: Sequence[Task] = ()) -> Placement | None:
    """One decision by a fresh policy that knows the workload ``trace`` (default: the task).

    FGD reads the trace from its context; the default policy learns only from tasks it is asked
    to place, so it is shown the trace first (those decisions are not allocated).
    """
    trace = tuple(trace) or (task,)
    decider = make_policy(policy, PolicyContext(fleet, trace, np.random.default_rng(7)))
    for seen in trace:
        decider.place(seen)
    return decider.place(task)


@pytest.mark.parametrize("policy", BUILTIN_POLICIES)
def test_the_only_node_with_enough_cpu_gets_the_task(policy: str, fleet_of: FleetFactory) -> None:
    fleet = fleet_of((4000, 65536, 2, "T4"), (16000, 65536, 2, "T4"), (2000, 65536, 2, "T4"))
    assert place(policy, fleet, Task("a", 8000, 1024, 1, 1000)) == Placement(1, (0,))


@pytest.mark.parametrize("policy", BUILTIN_POLICIES)
def test_the_only_node_with_enough_memory_gets_the_task(
    policy: str, fleet_of: FleetFactory
) -> None:
    fleet = fleet_of((32000, 8192, 1, "T4"), (32000, 8192, 1, "T4"), (32000, 65536, 1, "T4"))
    assert place(policy, fleet, Task("a", 1000, 32768, 1, 500)) == Placement(2, (0,))


@pytest.mark.parametrize("policy", BUILTIN_POLICIES)
def test_gpu_spec_restricts_the_gpu_model(policy: str, fleet_of: FleetFactory) -> None:
    fleet = fleet_of(
        (32000, 65536, 4, "T4"), (32000, 65536, 4, "V100M32"), (32000, 65536, 4, "A10")
    )
    placement = place(policy, fleet, Task("a", 1000, 1024, 1, 1000, ("A10",)))
    assert placement is not None
    assert placement.node == 2


@pytest.mark.parametrize("policy", BUILTIN_POLICIES)
def test_a_task_fails_when_no_node_has_its_gpu_model(policy: str, fleet_of: FleetFactory) -> None:
    fleet = fleet_of((32000, 65536, 4, "T4"))
    assert place(policy, fleet, Task("a", 1000, 1024, 1, 300, ("A100",))) is None


@pytest.mark.parametrize("policy", BUILTIN_POLICIES)
def test_a_cpu_only_task_ignores_gpus_and_gpu_models(policy: str, fleet_of: FleetFactory) -> None:
    fleet = fleet_of((8000, 65536, 2, "T4"), (64000, 65536, 0, ""))
    assert place(policy, fleet, Task("a", 32000, 1024)) == Placement(1, ())


@pytest.mark.parametrize("policy", BUILTIN_POLICIES)
def test_a_share_only_fits_a_gpu_with_that_much_left(policy: str, fleet_of: FleetFactory) -> None:
    fleet = fleet_of((32000, 65536, 2, "T4"), (32000, 65536, 2, "T4"))
    fleet.allocate(Task("x", 1000, 1024, 1, 700), Placement(0, (0,)))
    fleet.allocate(Task("y", 1000, 1024, 1, 700), Placement(0, (1,)))
    fleet.allocate(Task("z", 1000, 1024, 1, 1000), Placement(1, (0,)))
    fleet.allocate(Task("w", 1000, 1024, 1, 500), Placement(1, (1,)))
    assert place(policy, fleet, Task("a", 1000, 1024, 1, 400)) == Placement(1, (1,))
    assert place(policy, fleet, Task("b", 1000, 1024, 1, 600)) is None


@pytest.mark.parametrize("policy", BUILTIN_POLICIES)
def test_whole_gpus_must_be_entirely_free(policy: str, fleet_of: FleetFactory) -> None:
    fleet = fleet_of((32000, 65536, 4, "T4"), (32000, 65536, 2, "T4"))
    for gpu in range(3):  # node 0: three GPUs slightly used, one free
        fleet.allocate(Task(f"s{gpu}", 1000, 1024, 1, 100), Placement(0, (gpu,)))
    assert place(policy, fleet, Task("a", 2000, 1024, 2, 1000)) == Placement(1, (0, 1))


@pytest.mark.parametrize("policy", BUILTIN_POLICIES)
def test_an_eight_gpu_task_needs_a_whole_eight_gpu_node(
    policy: str, fleet_of: FleetFactory
) -> None:
    fleet = fleet_of((96000, 393216, 8, "G2"), (96000, 393216, 8, "G2"), (96000, 393216, 4, "G2"))
    fleet.allocate(Task("s", 1000, 1024, 1, 100), Placement(0, (5,)))
    assert place(policy, fleet, Task("a", 64000, 262144, 8, 1000)) == Placement(1, tuple(range(8)))
    assert place(policy, fleet, Task("b", 64000, 262144, 9, 1000)) is None


@pytest.mark.parametrize("policy", ["bestfit", "fgd", "default"])
def test_a_share_completes_the_gpu_it_fits_exactly(policy: str, fleet_of: FleetFactory) -> None:
    # Node 1's GPU 1 has exactly 470 left; every packing policy should finish it off rather
    # than open one of the untouched GPUs.
    fleet = fleet_of((64000, 262144, 2, "T4"), (64000, 262144, 2, "T4"))
    fleet.allocate(Task("x", 4000, 8192, 1, 530), Placement(1, (1,)))
    share = Task("a", 4000, 8192, 1, 470)
    assert place(policy, fleet, share, [share, Task("y", 4000, 8192, 1, 530)]) == Placement(1, (1,))


@pytest.mark.parametrize("policy", ["bestfit", "fgd", "default"])
def test_a_whole_gpu_goes_to_the_node_already_in_use(policy: str, fleet_of: FleetFactory) -> None:
    # Keeping node 0 whole keeps room for the 4-GPU tasks the workload also has.
    fleet = fleet_of((64000, 262144, 4, "V100M16"), (64000, 262144, 4, "V100M16"))
    fleet.allocate(Task("x", 8000, 8192, 1, 1000), Placement(1, (0,)))
    single = Task("a", 8000, 8192, 1, 1000)
    placement = place(policy, fleet, single, [single, Task("q", 16000, 8192, 4, 1000)])
    assert placement is not None
    assert placement.node == 1
