"""Snapshots are immutable; ``update`` swaps in a new one and the old one keeps its answers."""

import threading

import pytest
from policy_harness import endpoint, invoke, policy, team_key

from corral.policy import Entity, PolicyEngine, decide, object_entity

ALLOW = policy("gate", 'permit(principal, action == Action::"invoke", resource);')
DENY = policy("gate", 'forbid(principal, action == Action::"invoke", resource);')


def test_update_swaps_policies_and_the_old_snapshot_is_unchanged():
    engine = PolicyEngine([ALLOW])
    before = engine.snapshot
    assert engine.decide(team_key("a"), "invoke", endpoint(), invoke()).allowed
    after = engine.update(policies=[DENY])
    assert engine.snapshot is after
    assert after is not before
    assert not engine.decide(team_key("a"), "invoke", endpoint(), invoke()).allowed
    assert decide(before, team_key("a"), "invoke", endpoint(), invoke()).allowed


def test_update_entities_keeps_policies_and_lets_resources_be_named_by_uid():
    engine = PolicyEngine(
        [
            policy(
                "search",
                'permit(principal, action == Action::"invoke", resource)\n'
                '  when { resource.hasTag("team") && resource.getTag("team") == "search" };',
            )
        ]
    )
    compiled = engine.snapshot.compiled
    labelled = endpoint("chat", team="search")
    engine.update(entities=[labelled])
    assert engine.snapshot.compiled is compiled
    assert engine.snapshot.entity_count == 1
    assert engine.decide(team_key("a"), "invoke", ("Endpoint", "default/chat"), invoke()).allowed
    engine.update(entities=[endpoint("chat", team="ads")])
    assert not engine.decide(
        team_key("a"), "invoke", ("Endpoint", "default/chat"), invoke()
    ).allowed


def test_failed_update_keeps_the_current_snapshot():
    engine = PolicyEngine([ALLOW])
    current = engine.snapshot
    wrong = Entity("Endpoint", "default/x", {"name": 3, "namespace": "default"})
    with pytest.raises(ValueError, match="does not conform to the schema"):
        engine.update(entities=[wrong])
    with pytest.raises(ValueError, match="appears twice"):
        engine.update(policies=[ALLOW, ALLOW])
    assert engine.snapshot is current


def test_decisions_during_swaps_each_see_one_whole_snapshot():
    engine = PolicyEngine([ALLOW])
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            engine.update(policies=[DENY])
            engine.update(policies=[ALLOW])

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        outcomes = [
            engine.decide(team_key("a"), "invoke", endpoint(), invoke()) for _ in range(300)
        ]
    finally:
        stop.set()
        swapper.join()
    for decision in outcomes:
        assert decision.errors == ()
        assert [ref.effect for ref in decision.reasons] == (
            ["permit"] if decision.allowed else ["forbid"]
        )


def test_object_entities_carry_labels_namespace_and_risk():
    tool = object_entity(
        {
            "kind": "Tool",
            "metadata": {"name": "web", "namespace": "ns1", "labels": {"team": "a"}},
            "spec": {"risk": "medium"},
        }
    )
    assert tool.uid == ("Tool", "ns1/web")
    assert tool.parents == (("Namespace", "ns1"),)
    assert tool.attrs == {"name": "web", "namespace": "ns1", "risk": "medium"}
    assert tool.tags == {"team": "a"}


def test_remembered_principals_are_keyed_by_their_content():
    engine = PolicyEngine(
        [
            policy(
                "gold",
                'permit(principal, action == Action::"invoke", resource)\n'
                '  when { principal.hasTag("tier") && principal.getTag("tier") == "gold" };',
            )
        ],
        [endpoint("chat")],
    )
    chat = ("Endpoint", "default/chat")
    assert engine.decide(team_key("a", labels={"tier": "gold"}), "invoke", chat, invoke()).allowed
    demoted = team_key("a", labels={"tier": "silver"})
    assert not engine.decide(demoted, "invoke", chat, invoke()).allowed
    assert engine.decide(team_key("a", labels={"tier": "gold"}), "invoke", chat, invoke()).allowed
