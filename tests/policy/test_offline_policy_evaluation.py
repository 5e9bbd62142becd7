"""``evaluate_request`` (for ``corral policy test``): strict input, same decisions as the engine."""

from pathlib import Path

import pytest
import yaml
from policy_harness import policy

from corral.api import BadRequest, Invalid
from corral.api.manifest import load_manifests
from corral.policy import evaluate_request

EXAMPLES = Path(__file__).parents[2] / "examples" / "policies"

REQUEST = yaml.safe_load(
    """
principal: {kind: team-key, id: default/ci-key, team: admins, namespace: default}
action: invoke
resource: {kind: Endpoint, metadata: {name: chat, namespace: default, labels: {team: search}}}
context: {model: chat, estimated_tokens: 900, time: "2026-01-05T10:00:00Z", client_ip: 10.0.0.7}
"""
)


def test_quickstart_policy_from_files_allows_admins_and_names_itself():
    decision = evaluate_request(load_manifests([str(EXAMPLES)]), REQUEST)
    assert decision.allowed
    assert decision.policies == ("default/admins-invoke-endpoints",)
    assert decision.reasons[0].annotation == "admins-invoke"
    other_team = {**REQUEST, "principal": {**REQUEST["principal"], "team": "devs"}}
    assert not evaluate_request(load_manifests([str(EXAMPLES)]), other_team).allowed


def test_cedar_entity_form_and_context_conveniences():
    policies = [
        policy(
            "net",
            'permit(principal == User::"ana", action == Action::"invoke", resource)\n'
            '  when { context has client_ip && context.client_ip.isInRange(ip("10.0.0.0/8")) &&\n'
            "         context.time.hour == 10 };",
        )
    ]
    request = {
        **REQUEST,
        "principal": {"type": "User", "id": "ana", "attrs": {"name": "ana", "act": []}},
    }
    assert evaluate_request(policies, request).allowed
    outside = {**request, "context": {**REQUEST["context"], "client_ip": "192.168.1.1"}}
    assert not evaluate_request(policies, outside).allowed


def test_tool_call_arguments_as_a_plain_mapping():
    policies = [
        policy(
            "read-only",
            'permit(principal, action == Action::"call", resource)\n'
            '  when { context.arguments.hasTag("mode") &&\n'
            '         context.arguments.getTag("mode") == "read" };',
        )
    ]
    request = {
        "principal": REQUEST["principal"],
        "action": "call",
        "resource": {"kind": "Tool", "metadata": {"name": "fs", "namespace": "default"}},
        "context": {"arguments": {"mode": "read", "depth": 2}, "time": "2026-01-05T10:00:00Z"},
    }
    decision = evaluate_request(policies, request)
    assert decision.allowed, decision.errors
    request["context"]["arguments"] = {"mode": "write"}
    assert not evaluate_request(policies, request).allowed


def test_bad_request_names_every_problem():
    request = {
        "principal": {"type": "User"},
        "action": "fly",
        "resource": {"kind": "Endpoint", "metadata": {}},
        "context": {"time": "soon"},
        "extra": 1,
    }
    with pytest.raises(BadRequest) as caught:
        evaluate_request([], request, location="req.yaml")
    assert sorted(str(cause) for cause in caught.value.causes) == [
        "req.yaml action: must be one of invoke, call, call_without_approval, apply, delete",
        "req.yaml context.time: not an RFC 3339 time",
        "req.yaml extra: unknown field",
        "req.yaml principal.id: required: a string",
        "req.yaml resource: an object needs a kind and metadata.name to be a policy resource",
    ]


def test_invalid_policies_are_errors_not_denials():
    broken = policy("broken", 'permit(principal, action, resource) when { resource.owner == "x" };')
    with pytest.raises(Invalid) as caught:
        evaluate_request([broken, {"kind": "Team"}], REQUEST)
    causes = [str(cause) for cause in caught.value.causes]
    assert causes[0].startswith("policies[0] spec.cedar: line 1, column 1 (statement 1): ")
    assert causes[-1] == "policies[1] kind: expected a Policy"
