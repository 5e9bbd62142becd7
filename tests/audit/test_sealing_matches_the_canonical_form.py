"""The writer's fast paths give exactly what the reference forms give: ``seal`` hashes the bytes
``record_bytes`` writes (so logs written before and after verify alike), its records equal
ones built field by field, and nested plain details are copied, not shared, as a JSON round
trip would leave them; anything a round trip would change is still refused."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from corral.audit.log import now_rfc3339
from corral.audit.record import (
    GENESIS_HASH,
    AuditEvent,
    AuditRecord,
    canonical_details,
    leaf_hash,
    record_bytes,
    seal,
    seal_batch,
)

EVENTS = [
    AuditEvent("team-key:default/a", "invoke", "Endpoint/default/llm", "allow"),
    AuditEvent(
        "team-key:default/a",
        "invoke",
        "Endpoint/default/llm",
        "deny",
        ("forbid-b", "allow-a"),
        0.000123,
        {
            "model": "gpt-4o-mini",
            "status": 200,
            "inputTokens": None,
            "budget": [
                {"action": "budget.reserve", "cost": 0.001, "hold": "h-1", "zeta": True},
                {"action": "budget.settle", "cost": 0.0005, "nested": {"b": [1, 2], "a": {}}},
            ],
        },
    ),
    AuditEvent("user:ünïcode", "apply", "Policy/ns/ä", "allow", ("p",), 3, {"note": "naïve ✓"}),
    AuditEvent("system:x", "budget.alert", "Budget/ns/b", "alert", (), 1e300, {"big": 2**64 - 1}),
]


def reference(record: AuditRecord) -> bytes:
    return record_bytes(
        seq=record.seq,
        time=record.time,
        actor=record.actor,
        action=record.action,
        resource=record.resource,
        decision=record.decision,
        policies=record.policies,
        cost=record.cost,
        details=record.details,
        prev_hash=record.prev_hash,
    )


def test_sealed_records_hash_the_reference_bytes_and_equal_field_by_field_ones() -> None:
    stamped = [(event, f"2026-11-24T10:00:0{i}.000001Z") for i, event in enumerate(EVENTS)]
    records = seal_batch(stamped, next_seq=7, last_hash=GENESIS_HASH)
    previous = GENESIS_HASH
    for offset, (record, (event, time)) in enumerate(zip(records, stamped, strict=True)):
        assert record.seq == 7 + offset
        assert record.prev_hash == previous
        assert record.hash == leaf_hash(reference(record)) == record.computed_hash()
        built = AuditRecord(
            seq=record.seq,
            time=time,
            actor=event.actor,
            action=event.action,
            resource=event.resource,
            decision=event.decision,
            policies=tuple(event.policies),
            cost=event.cost,
            details=dict(event.details),
            prev_hash=previous,
            hash=record.hash,
        )
        assert record == built
        assert record.columns is not None
        assert built.columns is None
        # The stored columns are the canonical encoding's own pieces.
        assert record.columns[0].encode() in reference(record)
        assert record.columns[1].encode() in reference(record)
        previous = record.hash


def test_a_sealed_record_does_not_share_its_details_with_the_event() -> None:
    event = EVENTS[1]
    record = seal(event, seq=0, time="2026-11-24T10:00:00.000000Z", prev_hash=GENESIS_HASH)
    assert record.details == event.details
    assert record.details is not event.details


def test_nested_plain_details_are_copied_and_kept_as_given() -> None:
    budget = [{"action": "budget.reserve", "cost": 0.25, "ids": ["a", "b"], "more": {"n": None}}]
    details = {"model": "m", "budget": budget}
    event = AuditEvent("a:b", "invoke", "Endpoint/x/y", "allow", (), 0.0, details)
    assert event.details == details
    copied = event.details["budget"]
    assert copied is not budget
    assert copied[0] is not budget[0]
    assert copied[0]["ids"] is not budget[0]["ids"]
    budget[0]["cost"] = 99.0  # the caller changing its own dict later changes nothing recorded
    assert event.details["budget"][0]["cost"] == 0.25
    assert canonical_details(details) == details


@pytest.mark.parametrize(
    ("details", "message"),
    [
        ({"budget": [{"ids": ("a",)}]}, "read back unchanged"),
        ({"budget": [{"cost": float("nan")}]}, "read back unchanged"),
        ({"budget": [{1: "a"}]}, "not JSON-serialisable"),
        ({"budget": [{"k": "\udc80"}]}, "not JSON-serialisable"),
        ({"budget": [{"k": 2**64}]}, "not JSON-serialisable"),
        ({"budget": [{"k": object()}]}, "not JSON-serialisable"),
    ],
)
def test_nested_details_a_round_trip_would_change_are_refused(
    details: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        AuditEvent("a:b", "invoke", "Endpoint/x/y", "allow", (), 0.0, details)


def test_deeply_nested_details_take_the_round_trip_and_read_back_equal() -> None:
    deep: Any = {"leaf": "é"}
    for _ in range(8):
        deep = {"down": [deep]}
    event = AuditEvent("a:b", "invoke", "Endpoint/x/y", "allow", (), 0.0, {"deep": deep})
    assert event.details == {"deep": deep}


def test_the_record_time_is_what_isoformat_writes_in_utc() -> None:
    before = datetime.now(UTC)
    stamp = now_rfc3339()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before.replace(microsecond=0) <= moment <= after
    assert stamp == moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
