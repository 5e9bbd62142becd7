"""Policies are found by name (new ones register the same way the built-ins do), decisions
that over-commit are refused, and results plot to a PNG."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from corral.scheduler import (
    Fleet,
    Placement,
    PolicyContext,
    Task,
    make_policy,
    plot_allocation_curves,
    policy_names,
    register_policy,
    simulate,
)
from corral.scheduler.fleet import IntArray
from corral.scheduler.policy import ScoringPolicy
from corral.scheduler.workload import FloatArray

FleetFactory = Callable[..., Fleet]


class FirstFit(ScoringPolicy):
    """Lowest-numbered node that fits: every fitting node scores its negated index."""

    def score(self, task: Task, rows: IntArray) -> tuple[FloatArray, IntArray]:
        gpu = np.argmax(self.fleet.gpu_free[rows] >= task.gpu_milli, axis=1)
        return -rows.astype(np.float64), np.where(task.shares_gpu, gpu, -1).astype(np.int64)


def test_builtin_policies_are_registered() -> None:
    assert set(policy_names()) >= {"random", "bestfit", "fgd", "default"}


def test_an_unknown_policy_names_the_known_ones(fleet_of: FleetFactory) -> None:
    context = PolicyContext(fleet_of((1000, 1024, 1, "T4")), (), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"unknown policy 'nope'; known policies: .*bestfit"):
        make_policy("nope", context)


def test_a_registered_policy_runs_in_the_simulator(fleet_of: FleetFactory) -> None:
    if "test-first-fit" not in policy_names():
        register_policy("test-first-fit", FirstFit)
    with pytest.raises(ValueError, match="already registered"):
        register_policy("test-first-fit", FirstFit)
    with pytest.raises(ValueError, match="must be letters"):
        register_policy("first fit!", FirstFit)
    fleet = fleet_of((8000, 65536, 2, "T4"), (8000, 65536, 2, "T4"))
    trace = [Task("s", 1000, 1024, 1, 500)]
    result = simulate(fleet, trace, "test-first-fit", seed=0)
    # Ten shares of 500 make 130% of 4 GPUs' demand; two per GPU fit, the last two fail.
    assert result.allocation_ratio == 100.0
    assert result.submitted_pods == 10
    assert result.failed_pods == 2


def test_allocate_refuses_what_does_not_fit(fleet_of: FleetFactory) -> None:
    fleet = fleet_of((8000, 8192, 3, "T4"))
    fleet.allocate(Task("a", 1000, 1024, 1, 600), Placement(0, (0,)))
    with pytest.raises(ValueError, match="GPU 0 on node 'node-0' cannot take 600 milli"):
        fleet.allocate(Task("b", 1000, 1024, 1, 600), Placement(0, (0,)))
    with pytest.raises(ValueError, match="does not fit on node 'node-0'"):
        fleet.allocate(Task("c", 9000, 1024), Placement(0, ()))
    with pytest.raises(ValueError, match="needs 2 distinct GPUs"):
        fleet.allocate(Task("d", 1000, 1024, 2, 1000), Placement(0, (1, 1)))
    with pytest.raises(ValueError, match="fleet has 1"):
        fleet.allocate(Task("e", 1000, 1024), Placement(3, ()))
    with pytest.raises(ValueError, match="GPU 0 on node 'node-0' cannot take 1000 milli"):
        fleet.allocate(Task("f", 1000, 1024, 2, 1000), Placement(0, (0, 2)))
    assert fleet.cpu_free[0] == 7000
    assert list(fleet.gpu_free[0]) == [400, 1000, 1000]


def test_allocation_curves_plot_to_a_png(tmp_path: Path, fleet_of: FleetFactory) -> None:
    fleet = fleet_of((32000, 65536, 4, "T4"), (32000, 65536, 4, "T4"))
    trace = [Task("s", 4000, 1024, 1, 470), Task("w", 8000, 1024, 1, 1000)]
    results = {name: simulate(fleet, trace, name, 0) for name in ("random", "default")}
    path = plot_allocation_curves(results, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_allocation_curves({}, tmp_path / "empty.png")


def test_plotting_without_matplotlib_says_what_to_install(
    tmp_path: Path, fleet_of: FleetFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = fleet_of((32000, 65536, 1, "T4"))
    result = simulate(fleet, [Task("w", 8000, 1024, 1, 1000)], "bestfit", 0)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(RuntimeError, match="needs matplotlib \\(pip install matplotlib\\)"):
        plot_allocation_curves({"bestfit": result}, tmp_path / "x.png")
