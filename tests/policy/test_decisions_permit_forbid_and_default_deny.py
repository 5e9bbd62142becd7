"""Decisions: deny by default, permits allow, forbids win, and the deciding policies are named."""

from datetime import UTC, datetime

import pytest
from policy_harness import MONDAY_10_UTC, endpoint, invoke, policy, team_key

from corral.policy import PolicyEngine, call_context, object_entity, principal_entity

ADMINS_INVOKE = 'permit(principal in Team::"default/admins", action == Action::"invoke", resource);'


def test_no_policies_denies_everything():
    decision = PolicyEngine().decide(team_key("admins"), "invoke", endpoint(), invoke())
    assert not decision.allowed
    assert decision.reasons == ()
    assert decision.errors == ()


def test_permit_allows_its_team_only_and_names_the_deciding_policy():
    engine = PolicyEngine([policy("admins", ADMINS_INVOKE)])
    allowed = engine.decide(team_key("admins"), "invoke", endpoint(), invoke())
    assert allowed.allowed
    assert allowed.policies == ("default/admins",)
    assert [ref.cedar_id for ref in allowed.reasons] == ["default/admins#1"]
    denied = engine.decide(team_key("devs"), "invoke", endpoint(), invoke())
    assert not denied.allowed
    assert denied.reasons == ()


def test_forbid_overrides_permit_and_is_the_reason():
    engine = PolicyEngine(
        [
            policy("admins", ADMINS_INVOKE),
            policy(
                "no-secret-endpoints",
                '@id("secret")\n'
                'forbid(principal, action == Action::"invoke", resource)\n'
                '  when { resource.hasTag("secret") };',
            ),
        ]
    )
    decision = engine.decide(team_key("admins"), "invoke", endpoint(secret="yes"), invoke())
    assert not decision.allowed
    assert decision.policies == ("default/no-secret-endpoints",)
    assert decision.reasons[0].effect == "forbid"
    assert decision.reasons[0].annotation == "secret"
    assert engine.decide(team_key("admins"), "invoke", endpoint(), invoke()).allowed


def test_statements_are_numbered_within_their_policy():
    engine = PolicyEngine(
        [
            policy(
                "two",
                'permit(principal, action == Action::"apply", resource);\n'
                'permit(principal, action == Action::"invoke", resource);',
            )
        ]
    )
    decision = engine.decide(team_key("a"), "invoke", endpoint(), invoke())
    assert [str(ref) for ref in decision.reasons] == ["default/two#2 (permit)"]


def test_resource_labels_match_the_callers_team():
    engine = PolicyEngine(
        [
            policy(
                "own-endpoints",
                'permit(principal is ApiKey, action == Action::"invoke", resource is Endpoint)\n'
                '  when { resource.hasTag("team") && resource.getTag("team") == principal.team };',
            )
        ]
    )
    assert engine.decide(team_key("search"), "invoke", endpoint(team="search"), invoke()).allowed
    assert not engine.decide(team_key("ads"), "invoke", endpoint(team="search"), invoke()).allowed
    assert not engine.decide(team_key("ads"), "invoke", endpoint(), invoke()).allowed


def test_team_labels_on_the_principal():
    engine = PolicyEngine(
        [
            policy(
                "gold",
                'permit(principal, action == Action::"invoke", resource)\n'
                '  when { principal.hasTag("tier") && principal.getTag("tier") == "gold" };',
            )
        ]
    )
    gold = team_key("a", labels={"tier": "gold"})
    assert engine.decide(gold, "invoke", endpoint(), invoke()).allowed
    assert not engine.decide(team_key("a"), "invoke", endpoint(), invoke()).allowed


def test_context_token_limit_and_office_hours():
    engine = PolicyEngine(
        [
            policy(
                "small-requests-in-office-hours",
                'permit(principal, action == Action::"invoke", resource)\n'
                "  when { context.estimated_tokens <= 4000 &&\n"
                "         context.time.hour >= 8 && context.time.hour < 18 &&\n"
                "         context.time.weekday <= 5 };",
            )
        ]
    )
    key = team_key("a")
    assert engine.decide(key, "invoke", endpoint(), invoke(tokens=4000)).allowed
    assert not engine.decide(key, "invoke", endpoint(), invoke(tokens=4001)).allowed
    night = datetime(2026, 1, 5, 22, 30, tzinfo=UTC)
    assert not engine.decide(key, "invoke", endpoint(), invoke(now=night)).allowed
    sunday = datetime(2026, 1, 4, 10, 0, tzinfo=UTC)
    assert not engine.decide(key, "invoke", endpoint(), invoke(now=sunday)).allowed


def test_tool_calls_see_risk_and_arguments():
    engine = PolicyEngine(
        [
            policy(
                "tools",
                'permit(principal, action == Action::"call", resource is Tool)\n'
                '  when { resource.risk == "low" };\n'
                'forbid(principal, action == Action::"call", resource)\n'
                '  when { context.arguments.hasTag("path") &&\n'
                '         context.arguments.getTag("path") like "/etc/*" };',
            )
        ]
    )
    agent = principal_entity(
        "workload", "spiffe://corral.local/ns/default/agent/helper", namespace="default"
    )
    tool = object_entity(
        {
            "kind": "Tool",
            "metadata": {"name": "files", "namespace": "default"},
            "spec": {"risk": "low"},
        }
    )

    def call(arguments: dict[str, object]) -> bool:
        context, args = call_context("session-1/3", arguments, now=MONDAY_10_UTC)
        return engine.decide(agent, "call", tool, context, entities=[args]).allowed

    assert call({"path": "/tmp/notes.txt", "lines": 10})
    assert not call({"path": "/etc/passwd"})
    risky = object_entity(
        {
            "kind": "Tool",
            "metadata": {"name": "shell", "namespace": "default"},
            "spec": {"risk": "high"},
        }
    )
    context, args = call_context("session-1/4", {}, now=MONDAY_10_UTC)
    assert not engine.decide(agent, "call", risky, context, entities=[args]).allowed


def test_apply_and_delete_on_resources_by_namespace():
    engine = PolicyEngine(
        [
            policy(
                "ops",
                'permit(principal in Team::"default/ops",\n'
                '       action in [Action::"apply", Action::"delete"],\n'
                '       resource in Namespace::"staging");',
            )
        ]
    )
    staging = object_entity({"kind": "Secret", "metadata": {"name": "k", "namespace": "staging"}})
    prod = object_entity({"kind": "Secret", "metadata": {"name": "k", "namespace": "prod"}})
    context = {"time": {"hour": 10, "weekday": 1}}
    assert staging.id == "Secret/staging/k"
    assert engine.decide(team_key("ops"), "delete", staging, context).allowed
    assert not engine.decide(team_key("ops"), "delete", prod, context).allowed
    assert not engine.decide(team_key("dev"), "apply", staging, context).allowed


def test_disabled_policies_do_not_count():
    engine = PolicyEngine([policy("admins", ADMINS_INVOKE, enabled=False)])
    assert not engine.decide(team_key("admins"), "invoke", endpoint(), invoke()).allowed


def test_principals_from_each_kind_of_caller():
    engine = PolicyEngine(
        [
            policy(
                "callers",
                'permit(principal is Agent in Namespace::"default", action, resource);\n'
                "permit(principal is User, action, resource)\n"
                '  when { principal has team && principal.team == "research" &&\n'
                '         principal.act.contains("spiffe://corral.local/ns/default/agent/bot") };',
            )
        ]
    )
    agent = principal_entity(
        "workload", "spiffe://corral.local/ns/default/agent/bot", namespace="default"
    )
    assert agent.attrs["name"] == "bot"
    assert engine.decide(agent, "invoke", endpoint(), invoke()).allowed
    elsewhere = principal_entity(
        "workload", "spiffe://corral.local/ns/prod/agent/bot", namespace="prod"
    )
    assert not engine.decide(elsewhere, "invoke", endpoint(), invoke()).allowed
    delegated = principal_entity(
        "user", "ana", team="research", act=("spiffe://corral.local/ns/default/agent/bot",)
    )
    assert delegated.parents == ()
    assert engine.decide(delegated, "invoke", endpoint(), invoke()).allowed
    assert not engine.decide(
        principal_entity("user", "ana"), "invoke", endpoint(), invoke()
    ).allowed


def test_principal_fields_that_cannot_make_a_principal_are_refused():
    with pytest.raises(ValueError, match="needs a team"):
        principal_entity("team-key", "default/k", namespace="default")
    with pytest.raises(ValueError, match="needs a namespace"):
        principal_entity("workload", "spiffe://corral.local/ns/default/agent/bot")
    with pytest.raises(ValueError, match="principal kind must be one of"):
        principal_entity("robot", "r2")  # type: ignore[arg-type]
