"""Each snapshot remembers its decisions; a remembered one is always what Cedar would answer."""

from datetime import UTC, datetime

import pytest
from policy_harness import MONDAY_10_UTC, endpoint, invoke, policy, team_key

from corral.policy import Entity, PolicyEngine, decide, invoke_context, principal_entity
from corral.policy.decision_cache import DecisionCache, context_attributes_read

INVOKE = 'permit(principal, action == Action::"invoke", resource is Endpoint)'
ALLOW = policy("gate", f"{INVOKE};")
TOKEN_CAP = policy(
    "cap",
    f"{INVOKE};\n"
    'forbid(principal, action == Action::"invoke", resource is Endpoint)\n'
    "  when { context.estimated_tokens > 1000 };",
)
NIGHT_FREEZE = policy(
    "freeze",
    f"{INVOKE};\n"
    'forbid(principal, action == Action::"invoke", resource is Endpoint)\n'
    "  when { context.time.hour >= 22 };",
)


def at_hour(hour: int) -> datetime:
    return MONDAY_10_UTC.replace(hour=hour)


def test_a_repeated_request_gets_the_same_decision_object_without_asking_cedar(monkeypatch):
    engine = PolicyEngine([TOKEN_CAP])
    caller, chat = team_key("a"), endpoint()
    first = engine.decide(caller, "invoke", chat, invoke(tokens=10))
    assert first.allowed
    assert first.policies == ("default/cap",)
    assert first == engine.decide(caller, "invoke", chat, invoke(tokens=10), cached=False)
    asked = []
    monkeypatch.setattr("corral.policy.engine.cedarpy.is_authorized", asked.append)
    again = engine.decide(caller, "invoke", chat, invoke(tokens=10))
    assert again is first
    assert asked == []


def test_remembered_decisions_equal_cedars_answer_across_a_mix_of_requests():
    engine = PolicyEngine([TOKEN_CAP, NIGHT_FREEZE])
    callers = [team_key("a"), team_key("b", labels={"tier": "gold"})]
    resources = [endpoint("chat"), endpoint("embed", team="search")]
    for _round in range(2):
        for caller in callers:
            for resource in resources:
                for tokens in (5, 1000, 1001):
                    for hour in (9, 22):
                        context = invoke(tokens=tokens, now=at_hour(hour))
                        cached = engine.decide(caller, "invoke", resource, context)
                        fresh = engine.decide(caller, "invoke", resource, context, cached=False)
                        assert cached == fresh
    assert len(engine.snapshot.decisions) == 2 * 2 * 3 * 2


def test_a_new_snapshot_never_answers_from_the_old_ones_decisions():
    engine = PolicyEngine([ALLOW])
    caller, chat = team_key("a"), endpoint()
    assert engine.decide(caller, "invoke", chat, invoke()).allowed
    old = engine.snapshot
    engine.update(policies=[policy("gate", f"forbid{INVOKE.removeprefix('permit')};")])
    assert len(engine.snapshot.decisions) == 0
    denied = engine.decide(caller, "invoke", chat, invoke())
    assert not denied.allowed
    assert denied.policies == ("default/gate",)
    # New entities alone (policies carried over) also start afresh.
    engine.update(entities=[endpoint("chat", team="x")])
    assert len(engine.snapshot.decisions) == 0
    assert not engine.decide(caller, "invoke", chat, invoke()).allowed
    # The old snapshot keeps its own answer.
    assert decide(old, caller, "invoke", chat, invoke()).allowed


def test_a_resource_named_by_uid_is_decided_afresh_when_its_tags_change():
    search_only = policy(
        "search",
        f'{INVOKE}\n  when {{ resource.hasTag("team") && resource.getTag("team") == "search" }};',
    )
    engine = PolicyEngine([search_only], [endpoint("chat", team="search")])
    uid = ("Endpoint", "default/chat")
    caller = team_key("a")
    assert engine.decide(caller, "invoke", uid, invoke()).allowed
    assert engine.decide(caller, "invoke", uid, invoke()).allowed
    engine.update(entities=[endpoint("chat", team="ads")])
    assert not engine.decide(caller, "invoke", uid, invoke()).allowed


def test_a_policy_reading_estimated_tokens_decides_each_estimate():
    engine = PolicyEngine([TOKEN_CAP])
    caller, chat = team_key("a"), endpoint()
    assert engine.snapshot.decisions.reads == frozenset({"estimated_tokens"})
    outcomes = [
        engine.decide(caller, "invoke", chat, invoke(tokens=tokens)).allowed
        for tokens in (10, 5000, 1000, 1001, 10, 5000)
    ]
    assert outcomes == [True, False, True, False, True, False]
    denied = engine.decide(caller, "invoke", chat, invoke(tokens=1001))
    assert denied.policies == ("default/cap",)
    assert denied.reasons[0].effect == "forbid"


def test_estimated_tokens_no_policy_reads_do_not_split_the_cache():
    engine = PolicyEngine([ALLOW])
    caller, chat = team_key("a"), endpoint()
    decisions = {engine.decide(caller, "invoke", chat, invoke(tokens=t)) for t in range(50)}
    assert len(engine.snapshot.decisions) == 1
    assert len({id(decision) for decision in decisions}) == 1


def test_an_unread_attribute_cedar_would_refuse_is_not_answered_from_the_cache():
    engine = PolicyEngine([ALLOW])
    caller, chat = team_key("a"), endpoint()
    assert engine.decide(caller, "invoke", chat, invoke(tokens=10)).allowed
    for wrong in ("10", True, 2**63, 1.5):
        context = {**invoke(), "estimated_tokens": wrong}
        decision = engine.decide(caller, "invoke", chat, context)
        assert not decision.allowed, wrong
        assert decision.errors, wrong
    bad_ip = invoke_context(model="chat", estimated_tokens=1, now=MONDAY_10_UTC)
    bad_ip["client_ip"] = {"__extn": {"fn": "ip", "arg": "not-an-ip"}}
    assert not engine.decide(caller, "invoke", chat, bad_ip).allowed
    assert len(engine.snapshot.decisions) == 1  # decisions with errors are not kept


def test_a_policy_reading_the_hour_decides_each_hour():
    engine = PolicyEngine([NIGHT_FREEZE])
    caller, chat = team_key("a"), endpoint()
    assert engine.snapshot.decisions.reads == frozenset({"time"})
    outcomes = [
        engine.decide(caller, "invoke", chat, invoke(now=at_hour(hour))).allowed
        for hour in (21, 22, 21, 23, 21)
    ]
    assert outcomes == [True, False, True, False, True]
    later_same_hour = datetime(2026, 1, 5, 21, 59, tzinfo=UTC)
    assert engine.decide(caller, "invoke", chat, invoke(now=later_same_hour)).allowed
    assert len(engine.snapshot.decisions) == 3  # hours 21, 22, 23


def test_a_principal_whose_team_changed_is_decided_afresh():
    admins_only = policy(
        "admins",
        'permit(principal in Team::"default/admins", action == Action::"invoke", resource);',
    )
    engine = PolicyEngine([admins_only])
    chat = endpoint()

    def key_of(team: str):
        return principal_entity("team-key", "default/the-key", team=team, namespace="default")

    before = key_of("devs")
    assert not engine.decide(before, "invoke", chat, invoke()).allowed
    after = key_of("admins")  # the access feed builds a new entity per key snapshot
    assert after.uid == before.uid
    assert engine.decide(after, "invoke", chat, invoke()).allowed
    assert not engine.decide(before, "invoke", chat, invoke()).allowed


def test_the_cache_stays_within_its_bound():
    engine = PolicyEngine([TOKEN_CAP])
    cache = engine.snapshot.decisions
    cache.capacity = 8
    caller, chat = team_key("a"), endpoint()
    for tokens in range(50):
        allowed = engine.decide(caller, "invoke", chat, invoke(tokens=tokens * 100)).allowed
        assert allowed == (tokens * 100 <= 1000)
        assert len(cache) <= 8
    assert len(cache) >= 1


def test_requests_with_per_call_entities_or_unkeyable_contexts_are_not_kept():
    engine = PolicyEngine([ALLOW])
    caller, chat = team_key("a"), endpoint()
    # A str subclass reaches Cedar as a string; the key only trusts exact JSON types.
    unkeyable = {**invoke(), "model": ModelName("chat")}
    assert engine.decide(caller, "invoke", chat, unkeyable).allowed
    assert len(engine.snapshot.decisions) == 0
    tool_arguments = Entity("Arguments", "call-1", tags={"path": "/tmp/x"})
    decision = engine.decide(caller, "invoke", chat, invoke(), entities=[tool_arguments])
    assert decision.allowed
    assert len(engine.snapshot.decisions) == 0


class ModelName(str):
    __slots__ = ()


@pytest.mark.parametrize(
    ("condition", "reads"),
    [
        ('context.model == "x" && context has stream', {"model", "stream"}),
        ('context["model"] == "x"', {"model"}),
        ("context has time.weekday && context.time.weekday == 1", {"time"}),
        ('context has client_ip && context.client_ip.isInRange(ip("10.0.0.0/8"))', {"client_ip"}),
        ('principal.name == "x"', set()),
        ("{wrapped: context}.wrapped.estimated_tokens > 1", None),
    ],
)
def test_the_attributes_policies_read_are_found_in_the_compiled_policies(condition, reads):
    compiled = PolicyEngine([policy("p", f"{INVOKE} when {{ {condition} }};")]).snapshot
    assert not compiled.problems
    expected = None if reads is None else frozenset(reads)
    assert context_attributes_read(compiled.compiled.policy_set) == expected


def test_when_policies_use_the_whole_context_every_attribute_is_keyed():
    whole = policy(
        "p", f"{INVOKE} when {{ {{wrapped: context}}.wrapped.estimated_tokens <= 1000 }};"
    )
    engine = PolicyEngine([whole])
    assert engine.snapshot.decisions.reads is None
    caller, chat = team_key("a"), endpoint()
    assert engine.decide(caller, "invoke", chat, invoke(tokens=1000)).allowed
    assert not engine.decide(caller, "invoke", chat, invoke(tokens=1001)).allowed
    assert len(engine.snapshot.decisions) == 2


def test_keys_tell_numbers_booleans_and_strings_apart():
    cache = DecisionCache(None)
    caller, chat = team_key("a"), endpoint()
    keys = {
        cache.key(caller, "invoke", chat, {"v": value})
        for value in (1, 1.0, True, "1", [1], {"x": 1})
    }
    assert len(keys) == 6


def test_keys_inside_records_tell_values_apart_and_unread_numbers_by_shape_only():
    exact, shaped = DecisionCache(None), DecisionCache(frozenset())
    caller, chat = team_key("a"), endpoint()
    values = (1, 1.0, True, "1", None, [1], {"y": 1}, 2**70)
    exact_keys = {exact.key(caller, "invoke", chat, {"r": {"x": value}}) for value in values}
    assert len(exact_keys) == len(values)
    shaped_keys = {shaped.key(caller, "invoke", chat, {"r": {"x": n}}) for n in (1, 2, 3)}
    assert len(shaped_keys) == 1  # an unread Long: only its shape counts
    assert shaped.key(caller, "invoke", chat, {"r": {"x": 2**70}}) not in shaped_keys
    assert shaped.key(caller, "invoke", chat, {"r": {"x": True}}) not in shaped_keys
    ip = {"__extn": {"fn": "ip", "arg": "10.0.0.1"}}
    other_ip = {"__extn": {"fn": "ip", "arg": "10.0.0.2"}}
    assert shaped.key(caller, "invoke", chat, {"ip": ip}) != shaped.key(
        caller, "invoke", chat, {"ip": other_ip}
    )  # extension values stay exact even when unread
    assert exact.key(caller, "invoke", chat, {"r": {1: "x"}}) is None  # not a JSON record
