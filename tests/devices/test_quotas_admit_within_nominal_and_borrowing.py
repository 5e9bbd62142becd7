"""Quotas: nominal amounts, cohort borrowing with a limit, and a mixed-priority replay."""

from __future__ import annotations

import random

import pytest

from corral.devices.demand import demand_from_claim
from corral.devices.quotas import QuotaError, quota_from_object
from corral.devices.scheduling import ClaimScheduler
from device_fleet import claim, compile_selector, gpu_class, gpu_node, quota


def scheduler(gpus_per_node: int = 4, nodes: int = 4) -> ClaimScheduler:
    core = ClaimScheduler(compile_selector)
    core.put_class(gpu_class())
    for i in range(nodes):
        core.put_node(gpu_node(f"n{i}", gpus_per_node))
    return core


def decide(core: ClaimScheduler, name: str, queue: str, **kw: object) -> str:
    decision = core.decide(demand_from_claim(claim(name, queue=queue, **kw)))  # type: ignore[arg-type]
    return decision.reason


def test_a_queue_without_a_cohort_stops_at_its_nominal_amount() -> None:
    core = scheduler()
    core.put_quota(quota("team-a", 3))
    assert [decide(core, f"a{i}", "team-a") for i in range(4)] == ["Allocated"] * 3 + [
        "QuotaExceeded"
    ]
    pending = core.decide(demand_from_claim(claim("a9", queue="team-a")))
    assert "no cohort to borrow from" in pending.message


def test_borrowing_uses_what_the_cohort_leaves_up_to_the_limit() -> None:
    core = scheduler()
    core.put_quota(quota("a", 4, cohort="c", borrowing=2))
    core.put_quota(quota("b", 4, cohort="c"))
    reasons = [decide(core, f"a{i}", "a") for i in range(7)]
    assert reasons == ["Allocated"] * 6 + ["QuotaExceeded"]
    assert core.book.borrowing("a")
    # b may still take its nominal 4 minus what a borrowed (2): the cohort pool is 8.
    assert [decide(core, f"b{i}", "b") for i in range(3)] == [
        "Allocated",
        "Allocated",
        "AllocatedAfterPreemption",
    ]
    assert core.book.violations() == []


def test_shares_count_as_fractions_of_a_device() -> None:
    core = scheduler()
    core.put_quota(quota("a", "1500m"))
    assert [decide(core, f"s{i}", "a", share="500m") for i in range(4)] == ["Allocated"] * 3 + [
        "QuotaExceeded"
    ]


def test_a_quota_without_the_class_admits_none_of_it() -> None:
    core = scheduler()
    doc = quota("a", 4)
    doc["spec"]["quotas"][0]["deviceClassName"] = "tpu"
    core.put_quota(doc)
    decision = core.decide(demand_from_claim(claim("x", queue="a")))
    assert decision.reason == "QuotaExceeded"
    assert "no quota for device class gpu" in decision.message


def test_bad_quota_amounts_name_the_field() -> None:
    doc = quota("a", "plenty")
    with pytest.raises(QuotaError, match=r"spec.quotas\[0\].nominal"):
        quota_from_object(doc)


def test_mixed_priority_replay_has_zero_violations() -> None:
    rng = random.Random(7)
    core = scheduler(gpus_per_node=8, nodes=6)
    core.put_quota(quota("research", 16, cohort="lab", borrowing=8))
    core.put_quota(quota("prod", 24, cohort="lab", borrowing=4))
    core.put_quota(quota("solo", 4))
    live: list[str] = []
    for step in range(200):
        if live and rng.random() < 0.35:
            core.forget(live.pop(rng.randrange(len(live))))
        queue = rng.choice(("research", "prod", "solo"))
        priority = rng.choice((0, 0, 0, 5, 10))
        share = rng.choice((None, None, "250m", "500m"))
        count = 1 if share else rng.choice((1, 1, 2, 4))
        doc = claim(f"c{step}", queue=queue, priority=priority, share=share, count=count)
        decision = core.decide(demand_from_claim(doc))
        if decision.outcome == "bound":
            live.append(decision.key)
        live = [k for k in live if k in core.bound]
        core.cycle()
        assert core.book.violations() == [], step
