"""ResourceClaim scheduling speed and quota behaviour: corral's claim scheduler core.

Three runs, all through ``corral.devices.scheduling.ClaimScheduler`` (the object the claim
controller drives; no store, so this is the decision cost alone):

1. openb fleet (1,213 nodes, 6,212 GPUs as DRA devices with a ``compute`` capacity of 1, so
   GPU shares are ``capacity.requests.compute: 460m``): the default trace's GPU pods as claims
   in a seeded random order until 100% of the GPU capacity has been asked for. A pod's
   ``gpu_spec`` becomes a CEL selector on the model attribute.
2. 5,000 nodes × 8 GPUs (three models, two NVLink domains per node) with a CEL selector on
   every claim (model, memory, or both), whole GPUs, shares and 4-GPU same-domain gangs, until
   90% of the capacity has been asked for.
3. Mixed-priority replay on 64 × 8 GPUs: three teams' queues in one cohort (nominal 1/3 each,
   borrowing allowed up to a limit) and one team alone, claims of priority 0, 5 and 10 arriving
   and finishing over 600 ticks; reports the wait (ticks from arrival to bound) per priority,
   preemptions, and quota violations checked after every tick (goal: 0).

Printed: decisions/s and p50/p99 decision latency per fleet; goals >= 1,000/s on openb and
>= 300/s on 5,000 × 8 with selectors.

    python benchmarks/claims_bench.py [--quick] [--engine cel|python] [--data DIR]

``--engine python`` evaluates the same selectors as precompiled Python predicates instead of
CEL (the allocator's cost without the CEL engine's).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from corral.devices.demand import Demand, demand_from_claim
from corral.devices.scheduling import ClaimScheduler
from corral.devices.scoring import BinPackingScore
from corral.scheduler import load_openb_nodes, load_openb_pods

GPU = "gpu.nvidia.com"
IS_GPU = f'device.driver == "{GPU}"'
DATA_CANDIDATES = (
    os.environ.get("CORRAL_OPENB_DIR", ""),
    str(Path(__file__).resolve().parent / "data" / "openb"),
    str(Path(__file__).resolve().parents[2] / "shared" / "data" / "openb"),
)
Predicate = Callable[[Mapping[str, Any]], bool]


class Selectors:
    """CEL expressions the bench uses, each with the equivalent Python predicate."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.python: dict[str, Predicate] = {IS_GPU: lambda d: d.get("driver") == GPU}

    def models(self, models: tuple[str, ...]) -> str:
        listed = ", ".join(f'"{m}"' for m in models)
        expression = f'device.attributes["{GPU}"].model in [{listed}]'
        allowed = set(models)
        self.python[expression] = lambda d: d["attributes"]["model"]["string"] in allowed
        return expression

    def memory_at_least(self, gib: int) -> str:
        expression = f'device.capacity["{GPU}"].memory.compareTo(quantity("{gib}Gi")) >= 0'
        self.python[expression] = lambda d: int(d["capacity"]["memory"]["value"][:-2]) >= gib
        return expression

    def compiler(self) -> Callable[[str], Predicate]:
        if self.engine == "python":
            return self.python.__getitem__
        from corral.devices.cel_cache import device_predicate

        return device_predicate


def node(name: str, gpus: int, model: str, memory_gib: int) -> dict[str, Any]:
    devices = [
        {
            "name": f"gpu{i}",
            "driver": GPU,
            "attributes": {
                "model": {"string": model},
                "nvlinkDomain": {"int": i * 2 // max(gpus, 1)},
                "uuid": {"string": f"GPU-{name}-{i}"},
            },
            "capacity": {"compute": {"value": "1"}, "memory": {"value": f"{memory_gib}Gi"}},
            "allowMultipleAllocations": True,
        }
        for i in range(gpus)
    ]
    return {"metadata": {"name": name}, "spec": {"devices": devices}}


def gpu_claim(
    name: str,
    *,
    count: int = 1,
    milli: int = 1000,
    selectors: tuple[str, ...] = (),
    same_domain: bool = False,
    priority: int = 0,
    queue: str = "default",
) -> Demand:
    exactly: dict[str, Any] = {"deviceClassName": "gpu", "count": count}
    if milli < 1000:
        exactly["capacity"] = {"requests": {"compute": f"{milli}m"}}
    if selectors:
        exactly["selectors"] = [{"cel": {"expression": s}} for s in selectors]
    devices: dict[str, Any] = {"requests": [{"name": "gpu", "exactly": exactly}]}
    if same_domain:
        devices["constraints"] = [{"matchAttribute": f"{GPU}/nvlinkDomain"}]
    return demand_from_claim(
        {
            "metadata": {"namespace": "bench", "name": name},
            "spec": {"devices": devices, "priority": priority, "queue": queue},
        }
    )


def scheduler(
    selectors: Selectors, nodes: list[dict[str, Any]], plugins: str = "default"
) -> ClaimScheduler:
    if plugins == "binpack":
        core = ClaimScheduler(selectors.compiler(), plugins=(BinPackingScore(),))
    else:
        core = ClaimScheduler(selectors.compiler())
    core.put_class(
        {"metadata": {"name": "gpu"}, "spec": {"selectors": [{"cel": {"expression": IS_GPU}}]}}
    )
    for doc in nodes:
        core.put_node(doc)
    return core


def timed_run(core: ClaimScheduler, claims: list[Demand]) -> dict[str, float]:
    latencies = []
    bound = 0
    start = time.perf_counter()
    for demand in claims:
        began = time.perf_counter()
        decision = core.decide(demand)
        latencies.append(time.perf_counter() - began)
        bound += decision.outcome == "bound"
        core.queue.remove(demand.key)
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "decisions": len(claims),
        "bound": bound,
        "decisions_per_s": len(claims) / wall,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def openb_run(
    data: Path, selectors: Selectors, seed: int, plugins: str = "default"
) -> dict[str, float]:
    fleet = load_openb_nodes(data / "openb_node_list_gpu_node.csv")
    nodes = [
        node(name, int(count), fleet.gpu_models[model], 32)
        for name, count, model in zip(fleet.names, fleet.gpu_count, fleet.gpu_model, strict=True)
    ]
    pods = [p for p in load_openb_pods(data / "openb_pod_list_default.csv") if p.num_gpu]
    rng = random.Random(seed)
    rng.shuffle(pods)
    capacity = int(fleet.gpu_count.sum()) * 1000
    claims, asked = [], 0
    for i, pod in enumerate(pods * 2):
        if asked + pod.gpu_demand_milli > capacity:
            break
        asked += pod.gpu_demand_milli
        picks = (selectors.models(pod.gpu_spec),) if pod.gpu_spec else ()
        claims.append(gpu_claim(f"p{i}", count=pod.num_gpu, milli=pod.gpu_milli, selectors=picks))
    core = scheduler(selectors, nodes, plugins)
    result = timed_run(core, claims)
    allocated = 100.0 * (1.0 - float(core.index.free_milli.sum()) / capacity)
    return result | {"gpu_allocated_pct": allocated, "nodes": len(nodes), "gpus": capacity // 1000}


def synthetic_run(selectors: Selectors, seed: int, nodes_n: int, gpus: int) -> dict[str, float]:
    rng = random.Random(seed)
    models = (("A100", 80), ("H100", 80), ("L40S", 48))
    nodes = []
    for i in range(nodes_n):
        model, memory = models[i % 3]
        nodes.append(node(f"n{i:05d}", gpus, model, memory))
    choices = (
        (selectors.models(("H100",)),),
        (selectors.models(("A100", "H100")),),
        (selectors.memory_at_least(40),),
        (selectors.memory_at_least(64), selectors.models(("A100",))),
        (selectors.models(("L40S",)),),
    )
    capacity = nodes_n * gpus * 1000
    claims, asked, i = [], 0, 0
    while asked < 0.9 * capacity:
        shape = rng.random()
        if shape < 0.4:
            count, milli, gang = 1, 1000, False
        elif shape < 0.7:
            count, milli, gang = 1, rng.choice((250, 500)), False
        elif shape < 0.9:
            count, milli, gang = rng.choice((2, 8)), 1000, False
        else:
            count, milli, gang = 4, 1000, True
        claims.append(
            gpu_claim(
                f"s{i}", count=count, milli=milli, selectors=rng.choice(choices), same_domain=gang
            )
        )
        asked += count * milli
        i += 1
    core = scheduler(selectors, nodes)
    # Selectors are evaluated once per device and expression, on first use: timed apart.
    warm = time.perf_counter()
    for expression in {e for c in choices for e in c} | {IS_GPU}:
        core.selection.matrix(expression)
    warm_s = time.perf_counter() - warm
    result = timed_run(core, claims)
    with_warmup = result["decisions"] / (result["decisions"] / result["decisions_per_s"] + warm_s)
    return result | {
        "selector_warmup_s": warm_s,
        "decisions_per_s_incl_warmup": with_warmup,
        "nodes": nodes_n,
        "gpus": nodes_n * gpus,
    }


def replay_run(selectors: Selectors, seed: int, ticks: int) -> dict[str, Any]:
    rng = random.Random(seed)
    core = scheduler(selectors, [node(f"r{i:03d}", 8, "H100", 80) for i in range(64)])
    for team, nominal, limit in (("alpha", 160, 96), ("beta", 160, 64), ("gamma", 160, None)):
        line: dict[str, Any] = {"deviceClassName": "gpu", "nominal": nominal}
        if limit is not None:
            line["borrowingLimit"] = limit
        core.put_quota({"metadata": {"name": team}, "spec": {"cohort": "lab", "quotas": [line]}})
    core.put_quota(
        {
            "metadata": {"name": "solo"},
            "spec": {"quotas": [{"deviceClassName": "gpu", "nominal": 32}]},
        }
    )
    queues = ("alpha", "beta", "gamma", "solo")
    arrived: dict[str, tuple[int, int]] = {}
    waits: dict[int, list[int]] = {0: [], 5: [], 10: []}
    ends: dict[str, int] = {}
    preemptions = violations = 0
    n = 0
    for tick in range(ticks):
        for key in [k for k, end in ends.items() if end <= tick]:
            del ends[key]
            core.forget(key)
        for _ in range(rng.randint(2, 9)):
            priority = rng.choices((0, 5, 10), weights=(70, 20, 10))[0]
            count = rng.choice((1, 1, 2, 4, 8))
            demand = gpu_claim(f"r{n}", count=count, priority=priority, queue=rng.choice(queues))
            arrived[demand.key] = (tick, priority)
            core.submit(demand)
            n += 1
        for decision in core.cycle():
            if decision.outcome == "bound":
                start, priority = arrived[decision.key]
                waits[priority].append(tick - start)
                ends[decision.key] = tick + rng.randint(5, 40)
                preemptions += len(decision.victims)
                for victim in decision.victims:
                    ends.pop(victim, None)
                    arrived[victim] = (tick, arrived[victim][1])
        violations += len(core.book.violations())
    summary: dict[str, Any] = {"ticks": ticks, "claims": n, "preemptions": preemptions}
    summary["quota_violations"] = violations
    for priority, values in waits.items():
        values.sort()
        summary[f"wait_p{priority}"] = {
            "bound": len(values),
            "mean": statistics.fmean(values) if values else 0.0,
            "p50": values[len(values) // 2] if values else 0,
            "p99": values[min(len(values) - 1, int(len(values) * 0.99))] if values else 0,
        }
    summary["still_pending"] = len(core.queue)
    return summary


def find_data(given: str | None) -> Path:
    for candidate in (given or "", *DATA_CANDIDATES):
        if candidate and (Path(candidate) / "openb_node_list_gpu_node.csv").is_file():
            return Path(candidate)
    sys.exit("openb data not found: pass --data DIR or set CORRAL_OPENB_DIR")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller synthetic fleet and replay")
    parser.add_argument("--engine", choices=("cel", "python"), default="cel")
    parser.add_argument("--data", help="directory with the openb CSV files")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    selectors = Selectors(args.engine)
    data = find_data(args.data)

    def show(title: str, row: Mapping[str, Any]) -> None:
        print(f"{title}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)

    show(f"openb fleet ({args.engine})", openb_run(data, selectors, args.seed))
    show("openb fleet, bin-packing only", openb_run(data, selectors, args.seed, "binpack"))
    size = 500 if args.quick else 5000
    show(f"{size}x8 with selectors ({args.engine})", synthetic_run(selectors, args.seed, size, 8))
    show("mixed-priority replay", replay_run(selectors, args.seed, 150 if args.quick else 600))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


if __name__ == "__main__":
    main()
