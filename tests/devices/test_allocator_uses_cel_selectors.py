"""The allocator with the real CEL engine at its selector seam (``cel_cache.device_predicate``)."""

from __future__ import annotations

from corral.devices.cel_cache import device_predicate
from corral.devices.demand import demand_from_claim
from corral.devices.scheduling import ClaimScheduler
from device_fleet import BIG_MEMORY, IS_H100, claim, gpu_class, gpu_node


def scheduler() -> ClaimScheduler:
    core = ClaimScheduler(device_predicate)
    core.put_class(gpu_class())
    core.put_node(gpu_node("a100", 2, memory="40Gi"))
    core.put_node(gpu_node("h100", 2, model="H100", memory="80Gi"))
    return core


def test_model_and_memory_selectors_pick_the_matching_node() -> None:
    core = scheduler()
    for name, selectors in (("fast", (IS_H100,)), ("big", (BIG_MEMORY,))):
        decision = core.decide(demand_from_claim(claim(name, selectors=selectors)))
        assert decision.placement is not None
        assert decision.placement.node == "h100"
    full = core.decide(demand_from_claim(claim("third", selectors=(BIG_MEMORY,))))
    assert full.outcome == "pending"


def test_a_selector_that_does_not_compile_makes_the_claim_unschedulable() -> None:
    core = scheduler()
    decision = core.decide(demand_from_claim(claim("bad", selectors=("device.driver ==",))))
    assert decision.outcome == "unschedulable"
    assert "does not compile" in decision.message


def test_a_missing_attribute_is_no_match_not_an_error() -> None:
    core = scheduler()
    missing = 'device.attributes["gpu.nvidia.com"].rack == "r1"'
    decision = core.decide(demand_from_claim(claim("rack", selectors=(missing,))))
    assert decision.outcome == "unschedulable"
    assert "no device in the fleet matches" in decision.message
