"""The budget stage on its own: which budgets apply, what is held, settled, released or refused.

The ledger is the real ``BudgetLedger`` over real SQLite counters in ``tmp_path``; the seam is
the rest of the gateway: ``call_next`` stands in for the inner stages and the upstream and sets
what the forwarding stage would (usage, status, the replica that answered). An audit sink
collects the events. A broken counter backend stands in for an unreachable database.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from corral.audit import AuditEvent
from corral.gateway import Call, GatewayError, RouteTable
from corral.gateway.routes import compile_endpoint
from corral.identity import Principal
from corral.metering import BudgetLedger, BudgetRule, Subject
from corral.observability import UsageReport
from corral.server.budget_snapshot import BudgetSnapshot, caller_subjects, compile_snapshot
from corral.server.budget_stage import DEFAULT_MAX_OUTPUT_TOKENS, BudgetGate
from corral.store.budget_ledger import SqliteBudgetCounters

NOW = 1_795_000_000.0  # 2026-11-18T...Z, a Wednesday
KEY = Principal(kind="team-key", id="default/ci-key", team="ops", namespace="default")
UPSTREAM = "http://127.0.0.1:9/v1"


def budget(name: str, scope: str, scope_name: str, **spec: Any) -> dict[str, Any]:
    limits = spec.pop("limits", {"tokens": 1000})
    return {
        "kind": "Budget",
        "metadata": {"name": name, "namespace": spec.pop("namespace", "default")},
        "spec": {"scope": {"kind": scope, "name": scope_name}, "limits": limits, **spec},
    }


def endpoint_object(name: str, models: list[str], runtime: str = "openai") -> dict[str, Any]:
    return {
        "kind": "Endpoint",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "models": [{"model": m, "weight": 100 // len(models)} for m in models],
            "runtime": {"type": runtime, "baseURL": UPSTREAM}
            if runtime == "openai"
            else {"type": runtime, "options": {"api_key": "k"}},
        },
        "status": {
            "replicas": [
                {"model": m, "ready": True, "state": "Ready", "apiBase": f"{UPSTREAM}/{m}"}
                for m in models
            ]
        },
    }


def model_object(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "kind": "Model",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"source": "file:///m.gguf", **spec},
    }


class Sink:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)

    def actions(self) -> list[str]:
        return [event.action for event in self.events]


class Harness:
    def __init__(self, ledger: BudgetLedger, sink: Sink) -> None:
        self.ledger = ledger
        self.sink = sink
        self.snapshot = BudgetSnapshot()
        self.endpoints: list[dict[str, Any]] = [endpoint_object("gpt", ["gpt-4o-mini"])]
        self.gate = BudgetGate(ledger, lambda: self.snapshot, audit=lambda: sink, clock=lambda: NOW)

    def configure(self, *budgets: dict[str, Any], models: tuple[dict[str, Any], ...] = ()) -> None:
        self.snapshot = compile_snapshot(budgets, models, self.endpoints)

    def call(
        self, payload: dict[str, Any], *, model: str = "gpt", principal: Principal = KEY
    ) -> Call:
        routes = RouteTable(compile_endpoint(e) for e in self.endpoints)
        call = Call({"headers": []}, _never, _never, "/v1/chat/completions", routes)
        call.principal = principal
        call.payload = {"model": model, **payload}
        call.body = orjson.dumps(call.payload)
        call.stream = bool(payload.get("stream"))
        call.endpoint = routes.lookup(model)
        return call

    async def spent(self, name: str, unit: str = "tokens") -> tuple[int, int]:
        rule = next(r for r in self.snapshot.rules if r.name == name)
        return (await self.ledger.usage(rule))[unit]


async def _never() -> Any:
    raise AssertionError("not used")


def answers(
    input_tokens: int | None, output_tokens: int, *, status: int = 200
) -> Callable[[Call], Awaitable[None]]:
    async def upstream(call: Call) -> None:
        assert call.endpoint is not None
        call.served_by = call.endpoint.versions[0].addresses[0]
        call.upstream_status = status
        call.usage = UsageReport(input_tokens, output_tokens, input_tokens is not None)

    return upstream


HELLO = {"messages": [{"role": "user", "content": "x" * 400}]}  # 100 + 4 + 3 tokens estimated
PROMPT = 107


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    counters = SqliteBudgetCounters(str(tmp_path / "budgets.db"))
    try:
        yield Harness(BudgetLedger(counters, clock=lambda: NOW), Sink())
    finally:
        await counters.close()


async def test_a_call_settles_its_real_usage_and_prices_it(harness: Harness) -> None:
    harness.configure(budget("ops-tokens", "team", "ops", limits={"tokens": 10_000}))
    call = harness.call({**HELLO, "max_tokens": 50})
    await harness.gate(call, answers(30, 20))
    assert await harness.spent("ops-tokens") == (50, 0)
    assert call.cost_usd == pytest.approx((30 * 0.15 + 20 * 0.60) / 1e6)  # gpt-4o-mini, shipped
    assert harness.sink.actions() == ["budget.reserve", "budget.settle"]
    reserve, settle = harness.sink.events
    assert reserve.details["tokens"] == PROMPT + 50
    assert reserve.resource == "Budget/default/ops-tokens"
    assert settle.decision == "charged"
    assert settle.details["tokens"] == 50
    assert reserve.actor == "default/ci-key"


async def test_cost_is_set_even_when_no_budget_applies(harness: Harness) -> None:
    harness.configure(budget("other", "team", "someone-else"))
    call = harness.call({**HELLO, "max_tokens": 5})
    await harness.gate(call, answers(10, 5))
    assert call.cost_usd == pytest.approx((10 * 0.15 + 5 * 0.60) / 1e6)
    assert harness.sink.events == []


async def test_unknown_input_tokens_settle_the_prompt_estimate(harness: Harness) -> None:
    harness.configure(budget("key", "apikey", "ci-key", limits={"tokens": 10_000}))
    await harness.gate(harness.call({**HELLO, "max_tokens": 50}), answers(None, 7))
    assert await harness.spent("key") == (PROMPT + 7, 0)


async def test_scopes_team_key_and_model_all_apply_and_others_do_not(harness: Harness) -> None:
    harness.configure(
        budget("by-team", "team", "ops"),
        budget("by-key", "apikey", "ci-key"),
        budget("by-model", "model", "gpt"),
        budget("wrong-namespace", "team", "ops", namespace="elsewhere"),
        budget("other-model", "model", "claude"),
    )
    await harness.gate(harness.call({**HELLO, "max_tokens": 10}), answers(5, 5))
    for name in ("by-team", "by-key", "by-model"):
        assert await harness.spent(name) == (10, 0), name
    for name in ("wrong-namespace", "other-model"):
        assert await harness.spent(name) == (0, 0), name


async def test_an_exhausted_hard_budget_refuses_with_429_and_retry_after(
    harness: Harness,
) -> None:
    harness.configure(budget("daily", "team", "ops", period="day", limits={"tokens": 320}))
    called: list[Call] = []

    async def upstream(call: Call) -> None:
        called.append(call)
        await answers(PROMPT, 50)(call)

    await harness.gate(harness.call({**HELLO, "max_tokens": 50}), upstream)
    await harness.gate(harness.call({**HELLO, "max_tokens": 50}), upstream)
    with pytest.raises(GatewayError) as refused:
        await harness.gate(harness.call({**HELLO, "max_tokens": 50}), upstream)
    error = refused.value
    assert len(called) == 2
    assert (error.status, error.type, error.code) == (429, "insufficient_quota", "budget_exceeded")
    assert "budget default/daily: 314 tokens of 320 tokens spent this day" in error.message
    assert "this request may cost up to 157 tokens" in error.message
    assert "resets at 2026-11-19T00:00:00Z" in error.message
    (retry_after,) = [value for name, value in error.headers if name == b"retry-after"]
    midnight = 1_795_046_400  # 2026-11-19T00:00:00Z
    assert int(retry_after) == midnight - int(NOW)
    assert harness.sink.actions()[-1] == "budget.refuse"
    assert await harness.spent("daily") == (2 * (PROMPT + 50), 0)


async def test_a_request_bigger_than_the_whole_budget_is_told_waiting_will_not_help(
    harness: Harness,
) -> None:
    harness.configure(budget("small", "team", "ops", limits={"tokens": 100}))
    with pytest.raises(GatewayError) as refused:
        await harness.gate(harness.call({**HELLO, "max_tokens": 500}), answers(1, 1))
    assert refused.value.status == 429
    assert refused.value.headers == []
    assert "waiting will not help" in refused.value.message


async def test_no_max_tokens_holds_the_default_cap_and_writes_it_into_the_request(
    harness: Harness,
) -> None:
    harness.configure(budget("big", "team", "ops", limits={"tokens": 1_000_000}))
    seen: list[dict[str, Any]] = []

    async def upstream(call: Call) -> None:
        seen.append(orjson.loads(call.body))
        await answers(PROMPT, 3)(call)

    await harness.gate(harness.call(HELLO), upstream)
    # An openai-runtime chat gets OpenAI's current field.
    assert seen[0]["max_completion_tokens"] == DEFAULT_MAX_OUTPUT_TOKENS
    assert harness.sink.events[0].details["tokens"] == PROMPT + DEFAULT_MAX_OUTPUT_TOKENS


async def test_the_models_context_window_caps_the_hold_and_a_local_runtime_gets_max_tokens(
    harness: Harness,
) -> None:
    harness.endpoints = [endpoint_object("local", ["small"], runtime="llamacpp")]
    harness.configure(
        budget("big", "team", "ops", limits={"tokens": 1_000_000}),
        models=(model_object("small", contextLength=512, pricing={"inputPerMillion": 1}),),
    )
    seen: list[dict[str, Any]] = []

    async def upstream(call: Call) -> None:
        seen.append(call.payload)
        await answers(PROMPT, 3)(call)

    call = harness.call({**HELLO, "n": 2}, model="local")
    await harness.gate(call, upstream)
    cap = 512 - PROMPT
    assert seen[0]["max_tokens"] == cap
    assert harness.sink.events[0].details["tokens"] == PROMPT + 2 * cap
    assert call.cost_usd == pytest.approx(PROMPT * 1.0 / 1e6)  # the Model's own price


async def test_soft_budgets_alert_and_let_the_request_through(harness: Harness) -> None:
    harness.configure(budget("soft", "team", "ops", mode="soft", limits={"tokens": 100}))
    call = harness.call({**HELLO, "max_tokens": 50})
    await harness.gate(call, answers(PROMPT, 50))
    assert call.upstream_status == 200
    alerts = [event for event in harness.sink.events if event.action == "budget.alert"]
    assert [event.decision for event in alerts] == ["projected", "exceeded"]
    assert await harness.spent("soft") == (PROMPT + 50, 0)


async def test_errors_and_refusals_inside_release_the_hold(harness: Harness) -> None:
    harness.configure(budget("ops", "team", "ops", limits={"tokens": 10_000}))

    async def guardrail_refuses(_call: Call) -> None:
        raise GatewayError(400, "blocked by guardrail")

    with pytest.raises(GatewayError):
        await harness.gate(harness.call({**HELLO, "max_tokens": 50}), guardrail_refuses)
    await harness.gate.aclose()
    await harness.gate(harness.call({**HELLO, "max_tokens": 50}), answers(None, 0, status=500))
    assert await harness.spent("ops") == (0, 0)
    assert harness.sink.actions() == ["budget.reserve", "budget.release"] * 2


async def test_an_answer_without_readable_usage_is_charged_the_whole_hold(
    harness: Harness,
) -> None:
    harness.configure(budget("ops", "team", "ops", limits={"tokens": 10_000}))

    async def no_usage(call: Call) -> None:
        call.upstream_status = 200

    await harness.gate(harness.call({**HELLO, "max_tokens": 50}), no_usage)
    assert await harness.spent("ops") == (PROMPT + 50, 0)


async def test_a_usd_budget_on_an_unpriced_endpoint(harness: Harness) -> None:
    harness.endpoints = [endpoint_object("local", ["free-ish"], runtime="llamacpp")]
    harness.configure(budget("usd", "team", "ops", limits={"usd": 5}))
    with pytest.raises(GatewayError) as refused:
        await harness.gate(harness.call({**HELLO, "max_tokens": 5}, model="local"), answers(1, 1))
    assert (refused.value.status, refused.value.code) == (403, "budget_unpriced")
    assert "spec.pricing" in refused.value.message

    harness.configure(budget("usd", "team", "ops", mode="soft", limits={"usd": 5, "tokens": 99}))
    call = harness.call({**HELLO, "max_tokens": 5}, model="local")
    await harness.gate(call, answers(3, 2))
    assert call.cost_usd is None
    assert await harness.spent("usd", "tokens") == (5, 0)
    assert await harness.spent("usd", "usd") == (0, 0)


async def test_usd_budgets_hold_the_priciest_version(harness: Harness) -> None:
    harness.endpoints = [endpoint_object("split", ["gpt-4o-mini", "gpt-4o"])]
    harness.configure(budget("usd", "team", "ops", limits={"usd": 1}))
    call = harness.call({**HELLO, "max_tokens": 100}, model="split")
    await harness.gate(call, answers(PROMPT, 100))  # served by the first: gpt-4o-mini
    held = harness.sink.events[0].details["micro_usd"]
    assert held == math.ceil(PROMPT * 2.5 + 100 * 10.0)  # gpt-4o's price, the higher one
    assert await harness.spent("usd", "usd") == (math.ceil(PROMPT * 0.15 + 100 * 0.6), 0)


async def test_bad_max_tokens_is_a_400(harness: Harness) -> None:
    harness.configure(budget("ops", "team", "ops"))
    with pytest.raises(GatewayError) as refused:
        await harness.gate(harness.call({**HELLO, "max_tokens": "lots"}), answers(1, 1))
    assert (refused.value.status, refused.value.param) == (400, "max_tokens")


class BrokenCounters(SqliteBudgetCounters):
    async def reserve(self, *_args: Any) -> Any:
        raise ConnectionError("database is down")


async def test_an_unreachable_ledger_refuses_hard_budgets_and_lets_soft_ones_pass(
    tmp_path: Path,
) -> None:
    counters = BrokenCounters(str(tmp_path / "broken.db"))
    harness = Harness(BudgetLedger(counters, clock=lambda: NOW), Sink())
    try:
        harness.configure(budget("hard", "team", "ops"))
        with pytest.raises(GatewayError) as refused:
            await harness.gate(harness.call({**HELLO, "max_tokens": 5}), answers(1, 1))
        assert (refused.value.status, refused.value.code) == (503, "budget_ledger_unavailable")
        harness.configure(budget("soft", "team", "ops", mode="soft"))
        call = harness.call({**HELLO, "max_tokens": 5})
        await harness.gate(call, answers(1, 1))
        assert call.upstream_status == 200
    finally:
        await counters.close()


def test_budget_rules_compile_from_objects() -> None:
    snapshot = compile_snapshot([budget("b", "team", "ops")], [], [])
    assert snapshot.rules == (BudgetRule("default", "b", "team", "ops", "month", True, 1000, None),)


def test_workloads_are_budgeted_as_their_team_and_as_agents() -> None:
    agent = Principal(
        kind="workload",
        id="spiffe://corral.local/ns/research/agent/summariser",
        team="research/analysts",
        namespace="research",
    )
    assert caller_subjects(agent) == [
        Subject("research", team="analysts"),
        Subject("research", agent="summariser"),
    ]
    user = Principal(kind="user", id="alice", team="ops")  # no namespace: no team budget
    assert caller_subjects(user) == []
    # An agent acting for alice (RFC 8693: sub = alice, act.sub = the agent) spends its own
    # budgets, and so does an agent that delegated the task down the chain.
    delegated = Principal(
        kind="user",
        id="alice",
        act=(
            "spiffe://corral.local/ns/research/agent/summariser",
            "spiffe://corral.local/ns/ops/agent/planner",
        ),
    )
    assert caller_subjects(delegated) == [
        Subject("research", agent="summariser"),
        Subject("ops", agent="planner"),
    ]
    assert caller_subjects(KEY) == [
        Subject("default", team="ops"),
        Subject("default", apikey="ci-key"),
    ]


async def test_changed_budgets_and_teams_apply_from_the_next_call(harness: Harness) -> None:
    # The gate remembers which budgets a caller's calls to an Endpoint meet per snapshot and
    # route table: a new snapshot, or the same key in another team, must not find the old
    # answer. The calls share one route table, as the gateway's do.
    harness.configure(budget("ops-tokens", "team", "ops", limits={"tokens": 10_000}))
    first = harness.call({**HELLO, "max_tokens": 50})

    def same_route(call: Call) -> Call:
        call.routes, call.endpoint = first.routes, first.endpoint
        return call

    await harness.gate(first, answers(30, 20))
    assert await harness.spent("ops-tokens") == (50, 0)
    harness.configure(budget("ops-tokens", "team", "ops", limits={"tokens": 100}))
    with pytest.raises(GatewayError) as refused:
        await harness.gate(same_route(harness.call({**HELLO, "max_tokens": 50})), answers(1, 1))
    assert refused.value.status == 429
    moved = Principal(kind="team-key", id="default/ci-key", team="dev", namespace="default")
    recorded = len(harness.sink.events)
    await harness.gate(
        same_route(harness.call({**HELLO, "max_tokens": 50}, principal=moved)), answers(1, 1)
    )
    assert harness.sink.events[recorded:] == []  # no budget of team dev: nothing held
    harness.configure(
        budget("ops-tokens", "team", "ops", limits={"tokens": 100}),
        budget("dev-tokens", "team", "dev", limits={"tokens": 10_000}),
    )
    await harness.gate(
        same_route(harness.call({**HELLO, "max_tokens": 50}, principal=moved)), answers(3, 4)
    )
    assert await harness.spent("dev-tokens") == (7, 0)
