"""Property: whatever claims, nodes and deletions arrive, no device holds more than it has.

The check is independent of the index's own bookkeeping: it re-adds every committed allocation
from the Node documents' capacities.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.devices.demand import demand_from_claim
from corral.devices.scheduling import ClaimScheduler
from device_fleet import claim, compile_selector, gpu_class, gpu_node, quota

SHARES = ("100m", "250m", "460m", "500m", "1")


def assert_within_capacity(core: ClaimScheduler, nodes: dict[str, dict[str, Any]]) -> None:
    used: dict[tuple[str, str], Fraction] = {}
    whole: dict[tuple[str, str], int] = {}
    holders: dict[tuple[str, str], int] = {}
    for held in core.index.held.values():
        assert held.node in nodes, f"allocation on a node that is gone: {held.node}"
        for taken in held.taken:
            device = (held.node, taken.device)
            holders[device] = holders.get(device, 0) + 1
            if taken.exclusive:
                whole[device] = whole.get(device, 0) + 1
            else:
                amount = dict(taken.consumed).get("compute", Fraction(0))
                used[device] = used.get(device, Fraction(0)) + amount
    for device, count in whole.items():
        assert count == 1, f"{device} held whole twice"
        assert holders[device] == 1, f"{device} held whole and shared: {holders}"
    for (node, name), amount in used.items():
        spec = next(d for d in nodes[node]["spec"]["devices"] if d["name"] == name)
        assert spec["allowMultipleAllocations"], f"{name} shared but cannot be"
        assert amount <= 1, f"{node}/{name} holds {amount} of 1 compute"


operation = st.one_of(
    st.tuples(
        st.just("claim"), st.integers(0, 3), st.sampled_from((*SHARES, None)), st.integers(0, 3)
    ),
    st.tuples(st.just("delete-claim"), st.integers(0, 40)),
    st.tuples(st.just("node"), st.integers(0, 4), st.integers(1, 10), st.booleans()),
    st.tuples(st.just("delete-node"), st.integers(0, 4)),
    st.tuples(st.just("cycle")),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=60), st.booleans())
def test_no_device_is_ever_over_committed(ops: list[tuple[Any, ...]], with_quota: bool) -> None:
    core = ClaimScheduler(compile_selector)
    core.put_class(gpu_class())
    if with_quota:
        core.put_quota(quota("q0", 3, cohort="c", borrowing=2))
        core.put_quota(quota("q1", 2, cohort="c"))
    nodes: dict[str, dict[str, Any]] = {}
    claims: list[str] = []
    for op in ops:
        if op[0] == "claim":
            _, count, share, priority = op
            name = f"c{len(claims)}"
            doc = claim(
                name,
                count=count + 1 if share is None else 1,
                share=share,
                priority=priority,
                queue=f"q{priority % 2}",
            )
            claims.append(f"default/{name}")
            core.decide(demand_from_claim(doc))
        elif op[0] == "delete-claim" and claims:
            core.forget(claims[op[1] % len(claims)])
        elif op[0] == "node":
            _, index, gpus, shared = op
            nodes[f"n{index}"] = gpu_node(f"n{index}", gpus, shared=shared)
            core.put_node(nodes[f"n{index}"])
        elif op[0] == "delete-node":
            nodes.pop(f"n{op[1]}", None)
            core.remove_node(f"n{op[1]}")
        elif op[0] == "cycle":
            core.cycle()
        assert_within_capacity(core, nodes)
        assert core.book.violations() == []
        assert set(core.bound) <= set(core.index.held)
