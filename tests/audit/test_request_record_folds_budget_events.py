"""The request's ``invoke`` record folds the budget events recorded during it into
``details.budget``: the same record as building the whole details at once would give, whatever
the events' names, and sealed into the same canonical bytes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from corral.audit import AuditEvent
from corral.audit.record import seal
from corral.gateway import Call
from corral.server.audit_extension import invoke_event

pytestmark = pytest.mark.timeout(30)


def call() -> Call:
    stub = SimpleNamespace(
        principal=SimpleNamespace(kind="team", id="default/bench", team="default/bench"),
        endpoint=SimpleNamespace(namespace="default", name="chat"),
        usage=SimpleNamespace(input_tokens=30, output_tokens=9),
        payload={"model": "chat"},
        operation="chat",
        served_by="http://127.0.0.1:9",
        decided_by=("bench-invokes",),
        cost_usd=0.25,
    )
    return cast(Call, stub)


def budget_event(action: str, resource: str) -> AuditEvent:
    return AuditEvent(
        actor="default/bench",
        action=action,
        resource=resource,
        decision="allow",
        policies=("bench-invokes",),
        cost=0.125,
        details={"tokens": 80, "usd": 0.125, "period": "2026-11", "endpoint": "default/chat"},
    )


def expected(events: list[AuditEvent]) -> AuditEvent:
    folded: list[dict[str, Any]] = []
    for event in events:
        entry = {k: v for k, v in event.details.items() if k != "endpoint"}
        entry.update(
            action=event.action, resource=event.resource, decision=event.decision, cost=event.cost
        )
        folded.append(entry)
    details: dict[str, Any] = {
        "model": "chat",
        "operation": "chat",
        "status": 200,
        "team": "default/bench",
        "inputTokens": 30,
        "outputTokens": 9,
        "servedBy": "http://127.0.0.1:9",
        "budget": folded,
    }
    return AuditEvent(
        actor="team:default/bench",
        action="invoke",
        resource="Endpoint/default/chat",
        decision="allow",
        policies=("bench-invokes",),
        cost=0.25,
        details=details,
    )


@pytest.mark.parametrize("resource", ["Budget/default/roomy", "Budget/default/caf\u00e9"])
def test_the_folded_record_equals_one_built_whole(resource: str) -> None:
    events = [budget_event("budget.reserve", resource), budget_event("budget.settle", resource)]
    record = invoke_event(call(), 200, None, events)
    assert record == expected(events)
    stamp = {"seq": 7, "time": "2026-11-24T18:00:00.000000Z", "prev_hash": bytes(32)}
    assert seal(record, **stamp).hash == seal(expected(events), **stamp).hash
    assert "endpoint" in events[0].details  # the budget events themselves are left alone


def test_a_lone_surrogate_in_a_folded_name_is_still_refused() -> None:
    events = [budget_event("budget.reserve", "Budget/default/\ud800")]
    with pytest.raises(ValueError, match="details"):
        invoke_event(call(), 200, None, events)


def test_no_budget_events_no_budget_entry() -> None:
    assert "budget" not in invoke_event(call(), 200, None, ()).details
