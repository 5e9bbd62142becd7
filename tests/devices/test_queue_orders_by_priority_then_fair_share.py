"""The pending queue: priority first, then the queue furthest below its quota, then age."""

from __future__ import annotations

from corral.devices.demand import demand_from_claim
from corral.devices.scheduling import ClaimScheduler
from device_fleet import claim, compile_selector, gpu_class, gpu_node, quota


def test_priority_then_share_then_age() -> None:
    core = ClaimScheduler(compile_selector)
    core.put_class(gpu_class())
    core.put_node(gpu_node("n0", 8))
    core.put_quota(quota("busy", 4, cohort="c"))
    core.put_quota(quota("idle", 4, cohort="c"))
    for i in range(3):
        core.decide(demand_from_claim(claim(f"held{i}", queue="busy")))
    docs = [
        claim("busy-old", queue="busy"),
        claim("idle-new", queue="idle"),
        claim("urgent", queue="busy", priority=9),
    ]
    docs[0]["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    docs[1]["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    for doc in docs:
        core.submit(demand_from_claim(doc))
    order = [d.key for d in core.queue.ordered(core.book)]
    assert order == ["default/urgent", "default/idle-new", "default/busy-old"]


def test_a_claim_that_cannot_fit_does_not_block_the_ones_behind_it() -> None:
    core = ClaimScheduler(compile_selector)
    core.put_class(gpu_class())
    core.put_node(gpu_node("n0", 2))
    core.submit(demand_from_claim(claim("huge", count=2, priority=9)))
    core.decide(demand_from_claim(claim("blocker", count=1, priority=9)))
    core.submit(demand_from_claim(claim("small", count=1)))
    outcomes = {d.key: d.outcome for d in core.cycle()}
    assert outcomes == {"default/huge": "pending", "default/small": "bound"}
