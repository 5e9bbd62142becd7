"""The RateLimit kind's validation, which rules apply to whom, and the sliding-window arithmetic."""

from __future__ import annotations

from typing import Any

import pytest

from corral.api import Invalid
from corral.api.validation import validate_object
from corral.metering.budgets import Subject
from corral.metering.ratelimits import (
    Admission,
    CheckPlan,
    RateLimitRule,
    RateLimitSet,
    admission_tokens,
    fits,
    plan_checks,
    refusal_message,
    retry_after_s,
    sliding_count,
    window_position,
)

MINUTE_START = 1_700_000_040.0  # a multiple of 60


def rate_limit(name: str = "rl", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "RateLimit",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def test_a_rate_limit_needs_at_least_one_limit() -> None:
    with pytest.raises(Invalid) as refused:
        validate_object(rate_limit(scope={"kind": "team", "name": "search"}))
    assert "set requestsPerMinute, tokensPerMinute or concurrentRequests" in str(refused.value)


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ({"scope": {"kind": "team", "name": "a"}, "requestsPerMinute": 0}, "requestsPerMinute"),
        ({"scope": {"kind": "team", "name": "a"}, "tokensPerMinute": -5}, "tokensPerMinute"),
        ({"scope": {"kind": "team", "name": "a"}, "concurrentRequests": "x"}, "concurrentRequests"),
        ({"scope": {"kind": "user", "name": "a"}, "requestsPerMinute": 1}, "scope.kind"),
        ({"scope": {"kind": "team", "name": "Not_A_Name"}, "requestsPerMinute": 1}, "scope.name"),
        ({"scope": {"kind": "team", "name": "a"}, "rpm": 1}, "rpm"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(spec: dict[str, Any], where: str) -> None:
    with pytest.raises(Invalid) as refused:
        validate_object(rate_limit(**spec))
    assert where in str(refused.value)


def test_a_valid_rate_limit_compiles_into_a_rule() -> None:
    obj = validate_object(
        rate_limit(
            "team-rl",
            scope={"kind": "team", "name": "search"},
            requestsPerMinute=60,
            tokensPerMinute=10_000,
            concurrentRequests=4,
        )
    )
    rule = RateLimitRule.from_object(obj)
    assert rule == RateLimitRule("default", "team-rl", "team", "search", 60, 10_000, 4)
    assert rule.ref == "default/team-rl"


def test_a_stored_object_with_a_bad_spec_names_itself() -> None:
    bad = rate_limit("broken", scope={"kind": "team", "name": "a"}, requestsPerMinute=0)
    with pytest.raises(ValueError, match=r"RateLimit default/broken spec.requestsPerMinute"):
        RateLimitRule.from_object(bad)
    with pytest.raises(ValueError, match="expected a namespaced RateLimit"):
        RateLimitRule.from_object({"kind": "Budget", "metadata": {"name": "x"}})


def test_only_the_rules_scoped_to_the_subject_in_its_namespace_apply() -> None:
    rules = [
        RateLimitRule("default", "t", "team", "search", 10, None, None),
        RateLimitRule("default", "k", "apikey", "search-key", None, 100, None),
        RateLimitRule("default", "m", "model", "chat", None, None, 2),
        RateLimitRule("default", "a", "agent", "bot", 1, None, None),
        RateLimitRule("other", "t2", "team", "search", 10, None, None),
    ]
    limits = RateLimitSet(rules)
    assert limits.size == 5
    subject = Subject("default", team="search", apikey="search-key", model="chat")
    assert [rule.name for rule in limits.applicable(subject)] == ["t", "k", "m"]
    assert limits.applicable(Subject("default", model="embed")) == ()
    assert [r.name for r in limits.applicable(Subject("other", team="search"))] == ["t2"]
    assert RateLimitSet().applicable(subject) == ()


def test_checks_come_in_key_order_with_their_amounts() -> None:
    rules = [
        RateLimitRule("default", "b", "team", "x", 10, 1000, 3),
        RateLimitRule("default", "a", "model", "y", 5, None, None),
    ]
    checks = plan_checks(rules, estimated_tokens=70)
    assert [(c.key, c.kind, c.limit, c.amount) for c in checks] == [
        ("default/a/rpm", "requests", 5, 1),
        ("default/b/concurrent", "concurrent", 3, 1),
        ("default/b/rpm", "requests", 10, 1),
        ("default/b/tpm", "tokens", 1000, 70),
    ]
    assert [c.windowed for c in checks] == [True, False, True, True]


def test_a_check_plan_is_the_checks_with_the_requests_token_estimate_filled_in() -> None:
    rules = (
        RateLimitRule("default", "b", "team", "x", 10, 1000, 3),
        RateLimitRule("default", "a", "model", "y", 5, None, None),
    )
    plan = CheckPlan(rules)
    for estimated in (0, 70):
        checks = plan_checks(rules, estimated)
        assert plan.checks(estimated) == checks
        assert plan.args(estimated) == [(c.key, c.windowed, c.limit, c.amount) for c in checks]
    assert plan.counts_tokens
    assert plan.slot_keys == ("default/b/concurrent",)
    assert plan.token_keys == ("default/b/tpm",)
    assert not CheckPlan((RateLimitRule("default", "a", "model", "y", 5, None, 2),)).counts_tokens


def test_admitted_headers_name_the_tightest_request_and_token_limits() -> None:
    plan = CheckPlan(
        (
            RateLimitRule("default", "b", "team", "x", 10, 1000, 3),
            RateLimitRule("default", "a", "model", "y", 5, None, None),
        )
    )
    # In check order: a/rpm, b/concurrent, b/rpm, b/tpm. b/rpm has 2 left, a/rpm 1.5 (floored).
    assert plan.headers([3.5, 2, 8, 999.9999999999]) == [
        (b"x-ratelimit-limit-requests", b"5"),
        (b"x-ratelimit-remaining-requests", b"1"),
        (b"x-ratelimit-limit-tokens", b"1000"),
        (b"x-ratelimit-remaining-tokens", b"0"),  # less than one token left
    ]
    assert plan.headers([1, 0, 9.5, 0])[:2] == [
        (b"x-ratelimit-limit-requests", b"10"),
        (b"x-ratelimit-remaining-requests", b"0"),
    ]
    # Equally tight: the first in check order; never below zero.
    assert plan.headers([5, 0, 15, 10])[:2] == [
        (b"x-ratelimit-limit-requests", b"5"),
        (b"x-ratelimit-remaining-requests", b"0"),
    ]
    assert (
        CheckPlan((RateLimitRule("default", "c", "team", "x", None, None, 4),)).headers([1]) == []
    )


def test_admission_tokens_are_the_prompt_estimate_plus_the_output_limit() -> None:
    body = {"messages": [{"role": "user", "content": "Say hello."}]}
    assert admission_tokens(body) == 10  # 3 of text, 4 of framing, 3 reply priming
    assert admission_tokens({**body, "max_tokens": 60}) == 70
    assert admission_tokens({**body, "max_completion_tokens": 5, "max_tokens": 60}) == 15
    with pytest.raises(ValueError, match="'max_tokens' must be a non-negative integer"):
        admission_tokens({**body, "max_tokens": "many"})
    with pytest.raises(ValueError, match="'messages' must be a list"):
        admission_tokens({"messages": "hi"})


def test_the_window_position_and_the_previous_windows_weight() -> None:
    assert window_position(MINUTE_START) == (int(MINUTE_START // 60), 1.0)
    window, weight = window_position(MINUTE_START + 15)
    assert window == int(MINUTE_START // 60)
    assert weight == pytest.approx(0.75)
    assert sliding_count(4, 8, 0.75) == 10
    assert fits(4, 8, 0.75, 2, 12)
    assert not fits(4, 8, 0.75, 3, 12)


def test_retry_after_is_when_the_request_would_fit() -> None:
    # Previous minute 10, none now, limit 10: at 15 s the count is 7.5, one more fits once the
    # previous weighs 0.9 or less... it is already 0.75, so it fits now: the shortest wait.
    assert retry_after_s(0, 10, 1, 10, MINUTE_START + 15) == 1
    # Current 10 of 10: only the next minute helps, when 10 * (1 - g) + 1 <= 10, g = 0.1.
    assert retry_after_s(10, 0, 1, 10, MINUTE_START + 30) == 30 + 6
    # Current 5, previous 10, limit 10, 1 more at 0 s: 5 + 10 * (1 - f) + 1 <= 10: f >= 0.6.
    assert retry_after_s(5, 10, 1, 10, MINUTE_START) == 36
    # A request larger than the limit never fits.
    assert retry_after_s(0, 0, 11, 10, MINUTE_START) is None


def test_refusal_messages_say_which_limit_and_how_far() -> None:
    rule = RateLimitRule("default", "rl", "team", "x", 5, 100, 2)
    concurrent, rpm, tpm = plan_checks([rule], estimated_tokens=150)
    assert "requests per min (RPM) in RateLimit default/rl: Limit 5, Used 5" in refusal_message(
        rpm, Admission(False, (), 0, 5, 0), 0.5
    )
    assert "concurrent requests in RateLimit default/rl: Limit 2, In flight 2" in (
        refusal_message(concurrent, Admission(False, (), 0, 2, 0), 1.0)
    )
    assert "Request too large for tokens per min (TPM)" in refusal_message(
        tpm, Admission(False, (), 0, 0, 0), 1.0
    )
