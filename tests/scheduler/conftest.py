"""Small fleets and tasks for the placement tests, built so the right answer is known."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from corral.scheduler import Fleet

FleetFactory = Callable[..., Fleet]
NodeSpec = tuple[int, int, int, str]  # cpu_milli, memory_mib, gpus, model


def build_fleet(nodes: Sequence[NodeSpec]) -> Fleet:
    return Fleet.create(
        [f"node-{i}" for i in range(len(nodes))],
        [cpu for cpu, _, _, _ in nodes],
        [mem for _, mem, _, _ in nodes],
        [gpus for _, _, gpus, _ in nodes],
        [model for _, _, _, model in nodes],
    )


@pytest.fixture
def fleet_of() -> FleetFactory:
    """``fleet_of((cpu, mem, gpus, model), ...)``: an empty fleet, nodes named node-0, node-1…"""

    def make(*nodes: NodeSpec) -> Fleet:
        return build_fleet(nodes)

    return make
