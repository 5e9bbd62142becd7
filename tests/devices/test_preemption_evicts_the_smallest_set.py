"""Preemption: lower priorities and cohort borrowers may be evicted, as few as possible."""

from __future__ import annotations

from corral.devices.demand import demand_from_claim
from corral.devices.scheduling import ClaimScheduler
from device_fleet import claim, compile_selector, gpu_class, gpu_node, quota


def scheduler(*sizes: int) -> ClaimScheduler:
    core = ClaimScheduler(compile_selector)
    core.put_class(gpu_class())
    for i, size in enumerate(sizes):
        core.put_node(gpu_node(f"n{i}", size))
    return core


def bind(core: ClaimScheduler, name: str, **kw: object) -> str:
    decision = core.decide(demand_from_claim(claim(name, **kw)))  # type: ignore[arg-type]
    assert decision.outcome == "bound", decision
    assert decision.placement is not None
    return decision.placement.node


def test_one_big_victim_beats_several_small_ones() -> None:
    core = scheduler(4, 4)
    small = [bind(core, f"small{i}", count=1) for i in range(4)]
    assert len(set(small)) == 1
    bind(core, "big", count=4)
    decision = core.decide(demand_from_claim(claim("vip", count=4, priority=10)))
    assert decision.reason == "AllocatedAfterPreemption"
    assert decision.victims == ("default/big",)
    assert "default/big" in core.queue
    assert "default/big" not in core.bound


def test_the_fewest_victims_on_the_best_node_are_chosen() -> None:
    core = scheduler(4, 4)
    for i in range(3):
        bind(core, f"x{i}", count=1, priority=1)
    bind(core, "pad", count=1, priority=1)
    bind(core, "y", count=2, priority=1)
    bind(core, "z", count=2, priority=1)
    decision = core.decide(demand_from_claim(claim("vip", count=2, priority=5)))
    assert len(decision.victims) == 1
    assert decision.victims[0] in ("default/y", "default/z")


def test_equal_or_higher_priorities_are_never_evicted() -> None:
    core = scheduler(2)
    bind(core, "a", count=2, priority=5)
    decision = core.decide(demand_from_claim(claim("b", count=1, priority=5)))
    assert decision.outcome == "pending"
    assert decision.victims == ()


def test_reclaiming_quota_evicts_a_borrower_of_any_priority() -> None:
    core = scheduler(4, 4)
    core.put_quota(quota("a", 4, cohort="c"))
    core.put_quota(quota("b", 4, cohort="c"))
    for i in range(8):
        bind(core, f"b{i}", queue="b", priority=100)
    decision = core.decide(demand_from_claim(claim("mine", queue="a", count=2)))
    assert decision.reason == "AllocatedAfterPreemption"
    assert len(decision.victims) == 2
    assert all(v.startswith("default/b") for v in decision.victims)
    assert core.book.violations() == []
    # Reclaiming only brings a back up to its nominal 4, never over it.
    assert core.decide(demand_from_claim(claim("fill", queue="a", count=2))).outcome == "bound"
    blocked = core.decide(demand_from_claim(claim("more", queue="a", count=1)))
    assert blocked.outcome == "pending"
    assert blocked.victims == ()


def test_the_reason_names_the_preemptor() -> None:
    core = scheduler(1)
    bind(core, "low", count=1)
    decision = core.decide(demand_from_claim(claim("high", count=1, priority=3)))
    assert decision.victims == ("default/low",)
    assert "default/low" in decision.message
