"""Evaluation errors and unusable stored policies never crash a decision and never grant."""

from policy_harness import endpoint, invoke, policy, team_key

from corral.policy import PolicyEngine

OVERFLOWS = "context.estimated_tokens + 9223372036854775807 < 0"  # overflows unless 0
EVERYONE_INVOKES = 'permit(principal, action == Action::"invoke", resource);'


def test_erroring_permit_grants_nothing_and_the_error_is_recorded():
    engine = PolicyEngine(
        [
            policy(
                "overflow",
                f'permit(principal, action == Action::"invoke", resource) when {{ {OVERFLOWS} }};',
            )
        ]
    )
    decision = engine.decide(team_key("a"), "invoke", endpoint(), invoke(tokens=5))
    assert not decision.allowed
    assert len(decision.errors) == 1
    assert "default/overflow#1" in decision.errors[0]
    assert "overflow" in decision.errors[0]


def test_erroring_permit_beside_a_satisfied_permit_still_allows_with_the_error():
    engine = PolicyEngine(
        [
            policy(
                "overflow",
                f'permit(principal, action == Action::"invoke", resource) when {{ {OVERFLOWS} }};',
            ),
            policy("everyone", EVERYONE_INVOKES),
        ]
    )
    decision = engine.decide(team_key("a"), "invoke", endpoint(), invoke(tokens=5))
    assert decision.allowed
    assert decision.policies == ("default/everyone",)
    assert "default/overflow#1" in decision.errors[0]


def test_erroring_forbid_denies_and_is_the_reason():
    engine = PolicyEngine(
        [
            policy("everyone", EVERYONE_INVOKES),
            policy(
                "guard",
                f'forbid(principal, action == Action::"invoke", resource) when {{ {OVERFLOWS} }};',
            ),
        ]
    )
    decision = engine.decide(team_key("a"), "invoke", endpoint(), invoke(tokens=5))
    assert not decision.allowed
    assert decision.policies == ("default/guard",)
    assert "default/guard#1" in decision.errors[0]
    assert engine.decide(team_key("a"), "invoke", endpoint(), invoke(tokens=0)).allowed


def test_context_that_does_not_match_the_schema_denies_with_the_error():
    engine = PolicyEngine([policy("everyone", EVERYONE_INVOKES)])
    context = {**invoke(), "estimated_tokens": "lots"}
    decision = engine.decide(team_key("a"), "invoke", endpoint(), context)
    assert not decision.allowed
    assert decision.reasons == ()
    assert "context" in decision.errors[0]


def test_unknown_action_denies_with_the_error():
    engine = PolicyEngine([policy("everyone", "permit(principal, action, resource);")])
    decision = engine.decide(team_key("a"), "launch", endpoint(), invoke())
    assert not decision.allowed
    assert 'Action::"launch"' in decision.errors[0]


def test_stored_policy_that_no_longer_checks_fails_closed():
    broken_forbid = policy(
        "broken-guard",
        EVERYONE_INVOKES + '\nforbid(principal, action, resource) when { resource.owner == "x" };',
    )
    engine = PolicyEngine([policy("everyone", EVERYONE_INVOKES), broken_forbid])
    decision = engine.decide(team_key("a"), "invoke", endpoint(), invoke())
    assert not decision.allowed
    assert decision.policies == ("default/broken-guard",)
    assert "`owner`" in engine.snapshot.problems["default/broken-guard"][0]

    unreadable = policy("unreadable", "permit(principal, action")
    engine.update(policies=[policy("everyone", EVERYONE_INVOKES), unreadable])
    assert engine.decide(team_key("a"), "invoke", endpoint(), invoke()).policies == (
        "default/unreadable",
    )


def test_stored_permit_only_policy_that_no_longer_checks_is_left_out():
    broken_permit = policy(
        "broken", 'permit(principal, action, resource) when { resource.owner == "x" };'
    )
    engine = PolicyEngine([broken_permit])
    assert not engine.decide(team_key("a"), "invoke", endpoint(), invoke()).allowed
    engine.update(policies=[broken_permit, policy("everyone", EVERYONE_INVOKES)])
    decision = engine.decide(team_key("a"), "invoke", endpoint(), invoke())
    assert decision.allowed
    assert decision.policies == ("default/everyone",)
    assert list(engine.snapshot.problems) == ["default/broken"]


def test_context_value_that_cannot_be_sent_to_cedar_denies_with_the_error():
    engine = PolicyEngine([policy("everyone", EVERYONE_INVOKES)])
    context = {**invoke(), "model": object()}
    decision = engine.decide(team_key("a"), "invoke", endpoint(), context)
    assert not decision.allowed
    assert decision.errors[0].startswith("request: ")
