"""The Budget kind validates at the gate, and each request meets exactly the budgets it should."""

from __future__ import annotations

from typing import Any

import pytest

from corral.api.registry import lookup_kind
from corral.metering import BudgetRule, BudgetSet, Subject


def budget(name: str, spec: dict[str, Any], namespace: str = "prod") -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Budget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def test_budget_is_a_registered_namespaced_kind() -> None:
    info = lookup_kind("bdg")
    assert info is not None
    assert info.kind == "Budget"
    assert info.namespaced


def test_a_budget_compiles_to_a_rule_with_usd_in_micro_usd() -> None:
    spec = {"scope": {"kind": "team", "name": "search"}, "limits": {"usd": 12.5, "tokens": 10}}
    rule = BudgetRule.from_object(budget("search-monthly", spec))
    assert rule == BudgetRule(
        "prod", "search-monthly", "team", "search", "month", True, 10, 12_500_000
    )


@pytest.mark.parametrize(("usd", "micro_usd"), [(0.57, 570_000), (0.0000015, 1), (0.29, 290_000)])
def test_usd_limits_round_down_to_whole_micro_usd_without_float_noise(
    usd: float, micro_usd: int
) -> None:
    spec = {"scope": {"kind": "model", "name": "gpt-4o"}, "limits": {"usd": usd}}
    assert BudgetRule.from_object(budget("b", spec)).micro_usd_limit == micro_usd


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"scope": {"kind": "team", "name": "a"}, "limits": {}}, "spec.limits: .*set tokens, usd"),
        (
            {"scope": {"kind": "user", "name": "a"}, "limits": {"tokens": 1}},
            "spec.scope.kind: Input should be 'team', 'apikey', 'model' or 'agent'",
        ),
        (
            {"scope": {"kind": "team", "name": "A B"}, "limits": {"tokens": 1}},
            "spec.scope.name: .*not a valid resource name",
        ),
        (
            {"scope": {"kind": "team", "name": "a"}, "limits": {"usd": 0}},
            "spec.limits.usd: Input should be greater than 0",
        ),
        (
            {"scope": {"kind": "team", "name": "a"}, "limits": {"tokens": 1}, "period": "year"},
            "spec.period: Input should be 'day', 'week', 'month' or 'total'",
        ),
        (
            {"scope": {"kind": "team", "name": "a"}, "limits": {"tokens": 1}, "extra": 1},
            "spec.extra: Extra inputs are not permitted",
        ),
    ],
)
def test_a_bad_budget_is_refused_naming_the_object_and_field(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=f"Budget prod/b {message}"):
        BudgetRule.from_object(budget("b", spec))


def test_a_request_meets_every_budget_on_its_team_key_model_and_agent_in_its_namespace() -> None:
    def scoped(name: str, kind: str, target: str, namespace: str = "prod") -> dict[str, Any]:
        spec = {"scope": {"kind": kind, "name": target}, "limits": {"tokens": 1}}
        return budget(name, spec, namespace)

    budgets = BudgetSet.from_objects(
        [
            scoped("team", "team", "search"),
            scoped("key", "apikey", "ci-key"),
            scoped("model", "model", "gpt-4o"),
            scoped("agent", "agent", "triage"),
            scoped("other-team", "team", "ads"),
            scoped("other-namespace", "team", "search", namespace="dev"),
        ]
    )
    subject = Subject("prod", team="search", apikey="ci-key", model="gpt-4o", agent="triage")
    assert [rule.name for rule in budgets.applicable(subject)] == ["team", "key", "model", "agent"]
    assert budgets.applicable(Subject("prod", model="llama")) == ()
