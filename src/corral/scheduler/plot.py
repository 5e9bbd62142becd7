"""A PNG of GPU allocation against GPU demand submitted, one line per policy.

matplotlib is an optional dependency: it is imported only here, when a plot is asked for, and
its absence is reported as an error that says what to install.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from corral.scheduler.simulate import PolicySummary, SimResult


def plot_allocation_curves(
    results: Mapping[str, PolicySummary | SimResult],
    png_path: str | Path,
    *,
    title: str = "GPU allocation vs demand submitted",
) -> Path:
    """Draw each result's allocation curve (mean over seeds for a summary) into ``png_path``."""
    if not results:
        raise ValueError("nothing to plot: no results given")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise RuntimeError(
            "plot_allocation_curves needs matplotlib (pip install matplotlib)"
        ) from exc
    path = Path(png_path)
    figure = Figure(figsize=(7.0, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, result in results.items():
        if not result.curve:
            raise ValueError(f"result {label!r} has no allocation curve")
        demand, allocation = zip(*result.curve, strict=True)
        axes.plot(demand, allocation, label=label, linewidth=1.5)
    axes.plot([0, 100], [0, 100], color="grey", linestyle=":", linewidth=1, label="demand")
    axes.set_xlabel("GPU demand submitted (% of capacity)")
    axes.set_ylabel("GPU allocated (% of capacity)")
    axes.set_ylim(0, 100)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path
