"""simulate / simulate_many: inflation to the target demand, seeded determinism, the curve, the
summary, and policies ranking the way the paper's do on a small openb-like cluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corral.scheduler import (
    Fleet,
    SimResult,
    Task,
    simulate,
    simulate_many,
)
from corral.scheduler.workload import gpu_demand, inflate


def openb_like_fleet(nodes: int = 24) -> Fleet:
    """A small mix of the trace's node shapes: 8-GPU G2, 2-GPU T4, 4-GPU V100."""
    shapes = [(96000, 393216, 8, "G2"), (104000, 524288, 2, "T4"), (32000, 131072, 4, "V100M16")]
    picked = [shapes[i % len(shapes)] for i in range(nodes)]
    return Fleet.create(
        [f"n{i}" for i in range(nodes)],
        [s[0] for s in picked],
        [s[1] for s in picked],
        [s[2] for s in picked],
        [s[3] for s in picked],
    )


def openb_like_trace(count: int = 300, seed: int = 1) -> list[Task]:
    """Tasks in roughly the trace's proportions: CPU-only, shares, whole and multi-GPU."""
    kinds = [
        (12500, 30517, 0, 0),
        (3152, 5600, 1, 810),
        (11908, 47104, 1, 470),
        (4000, 15258, 1, 320),
        (11300, 49152, 1, 1000),
        (11400, 48128, 1, 1000),
        (32000, 131072, 4, 1000),
        (64200, 263168, 8, 1000),
    ]
    weights = np.asarray([12, 14, 10, 5, 25, 20, 2, 1], dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(kinds), size=count, p=weights / weights.sum())
    return [Task(f"p{i}", *kinds[k]) for i, k in enumerate(picks)]


def without_timing(result: SimResult) -> tuple[object, ...]:
    return (
        result.allocation_ratio,
        result.fragmentation_ratio,
        result.failed_pods,
        result.submitted_pods,
        result.curve,
    )


def test_inflation_tops_up_to_the_target_demand() -> None:
    trace = openb_like_trace(50)
    capacity = 100_000
    arrivals = inflate(trace, capacity, 1.3, np.random.default_rng(0))
    largest = max(task.gpu_demand_milli for task in trace)
    assert 1.3 * capacity - largest < gpu_demand(arrivals) <= 1.3 * capacity
    assert sorted(t.name for t in arrivals[: len(trace)]) == sorted(t.name for t in trace)


def test_inflation_thins_a_trace_that_asks_for_too_much() -> None:
    trace = openb_like_trace(400)
    arrivals = inflate(trace, 50_000, 1.3, np.random.default_rng(0))
    assert gpu_demand(arrivals) <= 65_000 < gpu_demand(arrivals) + 8000
    assert {t.name for t in arrivals} <= {t.name for t in trace}


@pytest.mark.parametrize("policy", ["random", "default"])
def test_a_seed_decides_everything_but_timing(policy: str) -> None:
    fleet, trace = openb_like_fleet(), openb_like_trace()
    first = simulate(fleet, trace, policy, seed=5)
    again = simulate(fleet, trace, policy, seed=5)
    other = simulate(fleet, trace, policy, seed=6)
    assert without_timing(first) == without_timing(again)
    assert first.curve != other.curve
    assert fleet.gpu_allocated_milli == 0  # the caller's fleet is left as it was


def test_a_run_reports_its_curve_and_counts() -> None:
    fleet, trace = openb_like_fleet(), openb_like_trace()
    result = simulate(fleet, trace, "bestfit", seed=0)
    demands = [demand for demand, _ in result.curve]
    assert demands == [float(d) for d in range(len(demands))]
    assert 129.0 <= demands[-1] <= 130.0
    assert 125.0 < result.demand_ratio <= 130.0
    allocations = [allocated for _, allocated in result.curve]
    assert allocations == sorted(allocations)  # nothing ever departs
    # A point is taken after the task that carried demand past it, which may be a big one.
    biggest = 100.0 * max(t.gpu_demand_milli for t in trace) / fleet.gpu_capacity_milli
    assert all(a <= d + biggest for d, a in result.curve)
    assert allocations[-1] == pytest.approx(result.allocation_ratio, abs=1.5)
    assert 0 < result.failed_pods < result.submitted_pods
    assert 0.0 <= result.fragmentation_ratio <= 100.0
    assert result.p50_decision_us <= result.p99_decision_us
    assert result.decisions_per_s > 0


def test_policies_rank_as_on_the_openb_trace_on_a_small_openb_like_cluster() -> None:
    fleet, trace = openb_like_fleet(36), openb_like_trace(600)
    mean = {
        policy: np.mean(
            [simulate(fleet, trace, policy, seed).allocation_ratio for seed in range(3)]
        )
        for policy in ("random", "bestfit", "fgd", "default")
    }
    assert mean["random"] + 1 < mean["bestfit"]
    assert mean["bestfit"] + 1 < mean["fgd"]
    assert mean["fgd"] < mean["default"]


def test_simulate_many_summarises_each_policy(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.csv"
    pods = tmp_path / "pods.csv"
    fleet, trace = openb_like_fleet(9), openb_like_trace(120)
    nodes.write_text(
        "sn,cpu_milli,memory_mib,gpu,model\n"
        + "".join(
            f"{fleet.names[i]},{fleet.cpu_capacity[i]},{fleet.mem_capacity[i]},"
            f"{fleet.gpu_count[i]},{fleet.gpu_models[fleet.gpu_model[i]]}\n"
            for i in range(len(fleet))
        )
    )
    pods.write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"
        + "".join(
            f"{t.name},{t.cpu_milli},{t.memory_mib},{t.num_gpu},{t.gpu_milli}\n" for t in trace
        )
    )
    summaries = simulate_many(nodes, pods, ["random", "fgd"], seeds=[3, 4])
    assert list(summaries) == ["random", "fgd"]
    for name, summary in summaries.items():
        assert [run.seed for run in summary.runs] == [3, 4]
        runs = [simulate(fleet, trace, name, seed) for seed in (3, 4)]
        assert summary.mean_allocation_ratio == pytest.approx(
            np.mean([r.allocation_ratio for r in runs])
        )
        assert summary.failed_pods == pytest.approx(np.mean([r.failed_pods for r in runs]))
        assert summary.decisions_per_s > 0
        assert summary.p99_decision_us > 0
        assert summary.curve[0] == (0.0, 0.0)
    with pytest.raises(ValueError, match="unknown policies \\['worst'\\]"):
        simulate_many(nodes, pods, ["worst"], seeds=1)
