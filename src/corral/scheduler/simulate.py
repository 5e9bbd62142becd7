"""Trace-driven evaluation of placement policies (the FGD paper's "workload inflation").

One run: inflate the trace into an arrival sequence (seeded), submit the tasks one at a time
to the policy with no departures and no preemption, allocate each decision on the fleet (which
rejects over-commitment), skip the tasks that fit nowhere. The figure of merit is the share of
GPU capacity allocated at the end; the run also records that share at every whole percent of
GPU demand submitted, the fragmentation left (FGD's definition, against the trace's full shape
mix including memory), and how long each decision took.

The arrival sequence depends only on the seed, so policies run with the same seed face the same
tasks in the same order. Policies get their own random stream, spawned from the same seed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from corral.scheduler.fleet import Fleet, Task
from corral.scheduler.fragmentation import fragmentation_ratio
from corral.scheduler.openb import load_openb_nodes, load_openb_pods
from corral.scheduler.policy import PolicyContext, make_policy, policy_names
from corral.scheduler.workload import TaskMix, inflate

DEFAULT_INFLATION = 1.3


@dataclass(frozen=True)
class SimResult:
    """One policy, one seed. Ratios are percent; ``curve`` is (demand %, allocation %) pairs."""

    policy: str
    seed: int
    allocation_ratio: float
    fragmentation_ratio: float
    submitted_pods: int
    failed_pods: int
    demand_ratio: float
    decisions_per_s: float
    p50_decision_us: float
    p99_decision_us: float
    curve: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class PolicySummary:
    """One policy over several seeds: means of the per-run figures (latencies: mean of each
    run's percentile; throughput: all decisions over all decision time)."""

    policy: str
    runs: tuple[SimResult, ...]
    mean_allocation_ratio: float
    std_allocation_ratio: float
    fragmentation_ratio: float
    failed_pods: float
    decisions_per_s: float
    p50_decision_us: float
    p99_decision_us: float
    curve: tuple[tuple[float, float], ...]


def simulate(
    nodes: Fleet,
    pods: Sequence[Task],
    policy: str,
    seed: int,
    *,
    inflation: float = DEFAULT_INFLATION,
) -> SimResult:
    """Run ``policy`` once on a copy of ``nodes`` with ``pods`` inflated to ``inflation`` ×
    GPU capacity. ``nodes`` itself is not changed."""
    fleet = nodes.copy()
    capacity = fleet.gpu_capacity_milli
    if capacity == 0:
        raise ValueError("the fleet has no GPUs to allocate")
    workload_seed, policy_seed = np.random.SeedSequence(seed).spawn(2)
    trace = tuple(pods)
    arrivals = inflate(trace, capacity, inflation, np.random.default_rng(workload_seed))
    placer = make_policy(policy, PolicyContext(fleet, trace, np.random.default_rng(policy_seed)))

    latencies = np.empty(len(arrivals), dtype=np.int64)
    curve: list[tuple[float, float]] = [(0.0, 100.0 * fleet.gpu_allocated_milli / capacity)]
    allocated = fleet.gpu_allocated_milli
    submitted = failed = 0
    next_percent = 1
    clock = time.perf_counter_ns
    for index, task in enumerate(arrivals):
        started = clock()
        placement = placer.place(task)
        if placement is None:
            failed += 1
        else:
            fleet.allocate(task, placement)
            allocated += task.gpu_demand_milli
        latencies[index] = clock() - started
        submitted += task.gpu_demand_milli
        while submitted * 100 >= next_percent * capacity:
            curve.append((float(next_percent), 100.0 * allocated / capacity))
            next_percent += 1

    total_ns = int(latencies.sum())
    p50, p99 = (np.percentile(latencies, [50, 99]) / 1000.0) if latencies.size else (0.0, 0.0)
    return SimResult(
        policy=policy,
        seed=seed,
        allocation_ratio=100.0 * allocated / capacity,
        fragmentation_ratio=fragmentation_ratio(fleet, TaskMix.from_tasks(trace, fleet)),
        submitted_pods=len(arrivals),
        failed_pods=failed,
        demand_ratio=100.0 * submitted / capacity,
        decisions_per_s=len(arrivals) / (total_ns / 1e9) if total_ns else 0.0,
        p50_decision_us=float(p50),
        p99_decision_us=float(p99),
        curve=tuple(curve),
    )


@lru_cache(maxsize=8)
def _load(nodes_path: str, pods_path: str) -> tuple[Fleet, tuple[Task, ...]]:
    return load_openb_nodes(nodes_path), tuple(load_openb_pods(pods_path))


def _run(job: tuple[str, str, str, int, float]) -> SimResult:
    nodes_path, pods_path, policy, seed, inflation = job
    fleet, pods = _load(nodes_path, pods_path)
    return simulate(fleet, pods, policy, seed, inflation=inflation)


def simulate_many(
    nodes_path: str | Path,
    pods_path: str | Path,
    policies: Iterable[str],
    seeds: int | Sequence[int] = 10,
    *,
    inflation: float = DEFAULT_INFLATION,
    workers: int = 1,
) -> dict[str, PolicySummary]:
    """Every policy × every seed (``seeds`` = N means 0..N-1) on one node list and pod list.

    ``workers`` > 1 spreads the runs over that many processes.
    """
    policies = list(policies)
    unknown = [name for name in policies if name not in policy_names()]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; known: {', '.join(policy_names())}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list or not policies:
        raise ValueError("need at least one policy and one seed")
    _load(str(nodes_path), str(pods_path))  # fail here, early, on unreadable files
    jobs = [
        (str(nodes_path), str(pods_path), policy, seed, inflation)
        for policy in policies
        for seed in seed_list
    ]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_run, jobs))
    else:
        results = [_run(job) for job in jobs]
    return {policy: summarize([r for r in results if r.policy == policy]) for policy in policies}


def summarize(runs: Sequence[SimResult]) -> PolicySummary:
    """Aggregate runs of one policy (see :class:`PolicySummary` for how)."""
    if not runs:
        raise ValueError("nothing to summarise")
    allocation = np.asarray([r.allocation_ratio for r in runs])
    decisions = sum(r.submitted_pods for r in runs)
    seconds = sum(r.submitted_pods / r.decisions_per_s for r in runs if r.decisions_per_s)
    points: dict[float, list[float]] = {}
    for run in runs:
        for demand, allocated in run.curve:
            points.setdefault(demand, []).append(allocated)
    return PolicySummary(
        policy=runs[0].policy,
        runs=tuple(runs),
        mean_allocation_ratio=float(allocation.mean()),
        std_allocation_ratio=float(allocation.std()),
        fragmentation_ratio=float(np.mean([r.fragmentation_ratio for r in runs])),
        failed_pods=float(np.mean([r.failed_pods for r in runs])),
        decisions_per_s=decisions / seconds if seconds else 0.0,
        p50_decision_us=float(np.mean([r.p50_decision_us for r in runs])),
        p99_decision_us=float(np.mean([r.p99_decision_us for r in runs])),
        curve=tuple((d, float(np.mean(v))) for d, v in sorted(points.items())),
    )
