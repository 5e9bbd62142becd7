"""The allocator: which node and devices a claim gets, and why it gets none."""

from __future__ import annotations

from typing import Any

import pytest

from corral.devices.allocator import NoFit, Placement
from corral.devices.demand import DemandError, demand_from_claim
from corral.devices.scheduling import ClaimScheduler
from device_fleet import GPU, IS_H100, claim, compile_selector, gpu_class, gpu_node


def scheduler(*nodes: dict[str, Any]) -> ClaimScheduler:
    core = ClaimScheduler(compile_selector)
    core.put_class(gpu_class())
    core.put_class(gpu_class("h100", IS_H100))
    for node in nodes:
        core.put_node(node)
    return core


def place(core: ClaimScheduler, doc: dict[str, Any]) -> Placement:
    decision = core.decide(demand_from_claim(doc))
    assert decision.outcome == "bound", decision
    assert decision.placement is not None
    return decision.placement


def test_whole_devices_come_from_one_node_and_are_not_given_twice() -> None:
    core = scheduler(gpu_node("a", 4), gpu_node("b", 4))
    first = place(core, claim("one", count=3))
    second = place(core, claim("two", count=3))
    assert first.node != second.node
    third = core.decide(demand_from_claim(claim("three", count=2)))
    assert third.outcome == "pending"
    assert third.reason == "WaitingForDevices"
    devices = [(p.node, t.device) for p in (first, second) for t in p.taken]
    assert len(set(devices)) == 6


def test_shares_pack_onto_one_device_until_its_capacity_is_used() -> None:
    core = scheduler(gpu_node("a", 2))
    shares = [place(core, claim(f"s{i}", share="300m")) for i in range(6)]
    per_device: dict[str, int] = {}
    for placement in shares:
        (taken,) = placement.taken
        assert not taken.exclusive
        per_device[taken.device] = per_device.get(taken.device, 0) + 300
    assert sorted(per_device.values()) == [900, 900]
    allocation = shares[0].allocation()
    result = allocation["devices"]["results"][0]
    assert result["consumedCapacity"] == {"compute": "300m"}
    assert result["driver"] == GPU
    assert result["pool"] == "a"
    assert core.decide(demand_from_claim(claim("whole", count=1))).outcome == "pending"


def test_class_and_claim_selectors_both_apply() -> None:
    core = scheduler(gpu_node("a100", 2), gpu_node("h100", 2, model="H100"))
    assert place(core, claim("x", device_class="h100")).node == "h100"
    assert place(core, claim("y", selectors=(IS_H100,))).node == "h100"
    late = core.decide(demand_from_claim(claim("z", device_class="h100")))
    assert late.outcome == "pending"


def test_match_attribute_keeps_devices_in_one_nvlink_domain() -> None:
    core = scheduler(gpu_node("a", 8, domains=2))
    place(core, claim("pad", count=1))
    placement = place(core, claim("ring", count=4, same_domain=True))
    domains = {int(t.device[3:]) * 2 // 8 for t in placement.taken}
    assert len(domains) == 1
    assert core.decide(demand_from_claim(claim("ring2", count=4, same_domain=True))).outcome == (
        "pending"
    )
    assert core.decide(demand_from_claim(claim("loose", count=3))).outcome == "bound"


def test_first_available_takes_the_first_alternative_that_fits() -> None:
    core = scheduler(gpu_node("a", 2))
    doc = claim("alt")
    doc["spec"]["devices"]["requests"] = [
        {
            "name": "gpus",
            "firstAvailable": [
                {"name": "h100", "deviceClassName": "h100", "count": 1},
                {"name": "any", "deviceClassName": "gpu", "count": 2},
            ],
        }
    ]
    placement = place(core, doc)
    assert [t.request for t in placement.taken] == ["gpus/any", "gpus/any"]


def test_all_mode_takes_every_matching_device_of_a_node() -> None:
    core = scheduler(gpu_node("a", 3))
    placement = place(core, claim("all", mode="All"))
    assert sorted(t.device for t in placement.taken) == ["gpu0", "gpu1", "gpu2"]


def test_unready_tainted_and_unhealthy_devices_are_skipped() -> None:
    core = scheduler(
        gpu_node("down", 4, ready=False),
        gpu_node("tainted", 4, taints=[{"key": "maint", "value": "x", "effect": "NoSchedule"}]),
        gpu_node("sick", 4, unhealthy=(0, 1, 2)),
    )
    placement = place(core, claim("one", count=1))
    assert placement.node == "sick"
    assert placement.taken[0].device == "gpu3"
    waiting = core.decide(demand_from_claim(claim("two", count=2)))
    assert waiting.outcome == "pending"


def test_counter_sets_limit_partitions_of_one_physical_device() -> None:
    node = gpu_node("mig", 0)
    node["spec"]["sharedCounters"] = [{"name": "gpu0", "counters": {"slices": {"value": "7"}}}]
    node["spec"]["devices"] = [
        {
            "name": f"gpu0-{size}g-{i}",
            "driver": GPU,
            "attributes": {"model": {"string": "A100"}},
            "capacity": {"memory": {"value": f"{size * 10}Gi"}},
            "consumesCounters": [{"counterSet": "gpu0", "counters": {"slices": {"value": size}}}],
        }
        for size, copies in ((4, 1), (3, 2), (1, 7))
        for i in range(copies)
    ]
    core = scheduler(node)
    taken = [place(core, claim(f"p{i}")) for i in range(7)]
    assert len(taken) == 7
    assert core.decide(demand_from_claim(claim("p8"))).outcome == "pending"


def test_claims_no_node_could_ever_satisfy_say_so() -> None:
    core = scheduler(gpu_node("a", 4))
    too_many = core.decide(demand_from_claim(claim("nine", count=9)))
    assert too_many.outcome == "unschedulable"
    assert "could ever" in too_many.message
    no_class = core.decide(demand_from_claim(claim("x", device_class="tpu")))
    assert no_class.outcome == "unschedulable"
    assert "DeviceClass 'tpu'" in no_class.message
    bad = core.decide(demand_from_claim(claim("y", selectors=("device.nope(",))))
    assert bad.outcome == "unschedulable"
    assert "does not compile" in bad.message
    assert core.decide(demand_from_claim(claim("fine", count=4))).outcome == "bound"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["spec"]["devices"].update(requests=[]), "spec.devices.requests"),
        (
            lambda d: d["spec"]["devices"]["requests"][0]["exactly"].update(count=0),
            "spec.devices.requests[0].exactly.count",
        ),
        (
            lambda d: d["spec"]["devices"]["requests"][0]["exactly"].update(
                capacity={"requests": {"compute": "lots"}}
            ),
            "spec.devices.requests[0].exactly.capacity.requests.compute",
        ),
        (lambda d: d["spec"].update(priority="high"), "spec.priority"),
    ],
)
def test_unreadable_claims_name_the_field(change: Any, field: str) -> None:
    doc = claim("bad")
    change(doc)
    with pytest.raises(DemandError, match=field.replace("[", r"\[").replace("]", r"\]")):
        demand_from_claim(doc)


def test_a_node_going_away_returns_its_claims_to_the_queue() -> None:
    core = scheduler(gpu_node("a", 2), gpu_node("b", 2))
    placement = place(core, claim("x", count=2))
    lost = core.remove_node(placement.node)
    assert lost == ["default/x"]
    assert "default/x" in core.queue
    (decision,) = core.cycle()
    assert decision.outcome == "bound"
    assert decision.placement is not None
    assert decision.placement.node != placement.node


def test_no_fit_is_reported_not_raised_for_an_empty_fleet() -> None:
    core = scheduler()
    result = core.allocator.place(demand_from_claim(claim("x")))
    assert isinstance(result, NoFit)
    assert not result.ever


def test_a_no_execute_taint_evicts_what_runs_under_it() -> None:
    core = scheduler(gpu_node("a", 2))
    place(core, claim("x", count=1))
    lost = core.put_node(
        gpu_node("a", 2, taints=[{"key": "broken", "value": "", "effect": "NoExecute"}])
    )
    assert lost == ["default/x"]
    assert "default/x" in core.queue
    assert not core.index.held


def test_a_node_update_keeps_allocations_it_can_still_hold() -> None:
    core = scheduler(gpu_node("a", 4))
    kept = place(core, claim("x", count=2))
    assert core.put_node(gpu_node("a", 4, model="A100-80")) == []
    assert core.index.held["default/x"] == kept.held
    shrunk = core.put_node(gpu_node("a", 1))
    assert shrunk == ["default/x"]


def test_two_shares_of_one_claim_may_land_on_one_device_and_both_come_back() -> None:
    core = scheduler(gpu_node("a", 1))
    doc = claim("pair", share="500m")
    doc["spec"]["devices"]["requests"][0]["exactly"]["count"] = 2
    placement = place(core, doc)
    assert [t.device for t in placement.taken] == ["gpu0", "gpu0"]
    assert core.decide(demand_from_claim(claim("more", share="100m"))).outcome == "pending"
    core.forget("default/pair")
    slot = core.index.rows[0].slots[0]  # type: ignore[union-attr]
    assert slot.free["compute"] == 1
    assert not slot.holders


def test_a_constraint_no_node_can_meet_is_unschedulable_not_pending() -> None:
    core = scheduler(gpu_node("a", 8, domains=2))
    decision = core.decide(demand_from_claim(claim("ring", count=5, same_domain=True)))
    assert decision.outcome == "unschedulable"
    assert "nvlinkDomain" in decision.message
    too_many = core.decide(demand_from_claim(claim("nine", count=9)))
    assert "at most 8 matching devices are on one node" in too_many.message
