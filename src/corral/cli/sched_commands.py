"""``corral sched simulate``: replay a GPU trace against placement policies, offline.

No server is involved: the node list and pod list are read from openb-style CSV files and
every policy is run through :func:`corral.scheduler.simulate_many`, the way the FGD paper
evaluates schedulers (see docs/scheduling-simulation.md). The scheduler package (numpy) is
imported only when the command runs, so other ``corral`` commands do not pay for it.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

if TYPE_CHECKING:
    from corral.scheduler import PolicySummary

ALL_POLICIES = "all"


@click.group()
def sched() -> None:
    """Accelerator placement: evaluate scheduling policies on a trace."""


def parse_policies(value: str, known: tuple[str, ...]) -> list[str]:
    """``all`` or a comma-separated list of known policy names, in the order given."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("give a policy name or 'all'", param_hint="--policy")
    if names == [ALL_POLICIES]:
        return list(known)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise click.BadParameter(
            f"unknown policy {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(known)} (or {ALL_POLICIES})",
            param_hint="--policy",
        )
    return list(dict.fromkeys(names))


def summary_json(summary: PolicySummary, seeds: int, inflation: float) -> dict[str, Any]:
    return {
        "policy": summary.policy,
        "mean_allocation_ratio": round(summary.mean_allocation_ratio, 4),
        "std_allocation_ratio": round(summary.std_allocation_ratio, 4),
        "fragmentation_ratio": round(summary.fragmentation_ratio, 4),
        "failed_pods": summary.failed_pods,
        "submitted_pods": sum(run.submitted_pods for run in summary.runs) / len(summary.runs),
        "decisions_per_s": round(summary.decisions_per_s, 1),
        "p50_decision_us": round(summary.p50_decision_us, 1),
        "p99_decision_us": round(summary.p99_decision_us, 1),
        "seeds": seeds,
        "inflation": inflation,
    }


def table(summaries: dict[str, PolicySummary]) -> str:
    lines = [
        f"{'policy':<10}{'alloc %':>9}{'± sd':>7}{'frag %':>8}{'failed':>9}"
        f"{'dec/s':>10}{'p50 µs':>9}{'p99 µs':>9}"
    ]
    for name, s in summaries.items():
        lines.append(
            f"{name:<10}{s.mean_allocation_ratio:>9.2f}{s.std_allocation_ratio:>7.2f}"
            f"{s.fragmentation_ratio:>8.1f}{s.failed_pods:>9.1f}{s.decisions_per_s:>10,.0f}"
            f"{s.p50_decision_us:>9.0f}{s.p99_decision_us:>9.0f}"
        )
    return "\n".join(lines)


def default_plot_path(pods: Path) -> Path:
    return pods.with_name(f"{pods.stem}-allocation.png")


@sched.command("simulate")
@click.option(
    "--nodes",
    "nodes_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="node list CSV (sn, cpu_milli, memory_mib, gpu, model)",
)
@click.option(
    "--pods",
    "pods_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="pod list CSV (name, cpu_milli, memory_mib, num_gpu, gpu_milli[, gpu_spec])",
)
@click.option(
    "--policy",
    "policy",
    default=ALL_POLICIES,
    show_default=True,
    metavar="NAME[,NAME…]|all",
    help="random, bestfit, fgd, default, a comma-separated list of them, or all",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="runs per policy, seeds 0..N-1 (each seed is one arrival order)",
)
@click.option(
    "--inflation",
    type=click.FloatRange(min=0, min_open=True),
    default=1.3,
    show_default=True,
    help="GPU demand submitted, as a multiple of the fleet's GPU capacity",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="processes to spread the runs over",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="where to write the PNG (default: PODS-allocation.png next to --pods)",
)
@click.option("--no-plot", is_flag=True, help="do not write a PNG")
def simulate(
    nodes_path: Path,
    pods_path: Path,
    policy: str,
    seeds: int,
    inflation: float,
    workers: int,
    as_json: bool,
    plot_path: Path | None,
    no_plot: bool,
) -> None:
    """Replay the pods on the nodes with each policy and report the GPU allocation.

    Every seed submits the pods in a random order, topped up with random repeats (or thinned)
    until the GPU demand submitted is INFLATION x capacity; nothing departs; a pod that fits
    nowhere is skipped. Policies run with the same seed see the same pods in the same order.

    \b
    The table (or, with --json, a JSON array with one object per policy) gives means over
    the seeds: mean_allocation_ratio (% of GPU capacity allocated at the end),
    fragmentation_ratio (% of the idle GPU capacity the trace's pod shapes cannot use),
    failed_pods (pods skipped per run), decisions_per_s and p50/p99 decision latency.

    \b
    A PNG of allocation against demand submitted, one line per policy, is written to --plot
    or next to --pods (needs matplotlib: pip install 'corral[plots]'); --no-plot skips it.
    Bad files are reported as FILE:LINE: what is wrong; exit codes: 0 ok, 1 error, 2 usage.
    """
    from corral.scheduler import (
        TraceError,
        plot_allocation_curves,
        policy_names,
        simulate_many,
    )

    if no_plot and plot_path is not None:
        raise click.UsageError("--plot and --no-plot contradict each other")
    names = parse_policies(policy, policy_names())
    target = None if no_plot else plot_path or default_plot_path(pods_path)
    if target is not None and not target.parent.is_dir():
        raise click.BadParameter(f"folder {target.parent} does not exist", param_hint="--plot")
    if target is not None and find_spec("matplotlib") is None:  # say so before the runs
        raise click.ClickException(
            "the plot needs matplotlib (pip install 'corral[plots]'); or pass --no-plot"
        )
    try:
        summaries = simulate_many(
            nodes_path, pods_path, names, seeds, inflation=inflation, workers=workers
        )
    except TraceError as error:
        raise click.ClickException(str(error)) from None
    except ValueError as error:  # e.g. a fleet without GPUs: nothing to allocate
        raise click.ClickException(f"{nodes_path}: {error}") from None

    written: Path | None = None
    if target is not None:
        title = f"{pods_path.name} on {nodes_path.name}, {seeds} seed(s)"
        try:
            written = plot_allocation_curves(summaries, target, title=title)
        except RuntimeError as error:  # matplotlib missing
            raise click.ClickException(f"{error}; or pass --no-plot") from None
        except OSError as error:
            raise click.ClickException(f"{target}: cannot write: {error.strerror}") from None

    if as_json:
        objects = [summary_json(s, seeds, inflation) for s in summaries.values()]
        click.echo(orjson.dumps(objects, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(
            f"{pods_path.name} on {nodes_path.name}: mean of {seeds} seed(s), "
            f"demand {inflation:.0%} of GPU capacity"
        )
        click.echo(table(summaries))
    if written is not None:
        click.echo(f"plot: {written}", err=as_json)
