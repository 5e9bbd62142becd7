"""The usage extension off the request path: what a finished call records, the bounded queue
(drops counted), batched flushes, the flush at close, and the time bounds of a usage query.
Real SQLite records; calls are doubles.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from corral.gateway import Call
from corral.gateway.routes import RouteTable
from corral.identity import Principal
from corral.observability import UsageReport
from corral.server import usage_extension
from corral.server.config import GATEWAY, ServerConfig
from corral.server.extensions import ServerContext
from corral.server.usage_extension import UsageExtension, record_of, time_bound
from corral.store.usage_records import open_usage_records

NOW = 1_800_000_000.0
KEY = Principal("team-key", "default/search-key", team="search", namespace="default")
HELLO = {"model": "chat", "messages": [{"role": "user", "content": "Say hello."}]}


async def _never(*_args: Any) -> Any:
    raise AssertionError("not used")


def finished(
    usage: UsageReport | None, status: int | None = 200, principal: Principal | None = KEY
) -> Call:
    call = Call(
        {"type": "http", "headers": []}, _never, _never, "/v1/chat/completions", RouteTable()
    )
    call.principal = principal
    call.payload = dict(HELLO)
    call.endpoint = SimpleNamespace(namespace="default", name="chat")  # type: ignore[assignment]
    call.upstream_status = status
    call.usage = usage
    call.cost_usd = 0.5 if usage is not None else None
    return call


def test_a_finished_call_records_who_what_and_the_tokens() -> None:
    record = record_of(finished(UsageReport(3, 4, True, ("stop",), "smol-v1")), NOW)
    assert record is not None
    assert (record.namespace, record.endpoint, record.request_model, record.served_model) == (
        "default",
        "chat",
        "chat",
        "smol-v1",
    )
    assert (record.principal_kind, record.team, record.api_key) == (
        "team-key",
        "search",
        "default/search-key",
    )
    assert (record.input_tokens, record.output_tokens, record.exact, record.cost_usd) == (
        3,
        4,
        True,
        0.5,
    )
    # Output counted, prompt unknown: the prompt estimate stands in and the record says so.
    counted = record_of(finished(UsageReport(None, 9, False)), NOW)
    assert counted is not None
    assert (counted.input_tokens, counted.output_tokens, counted.exact) == (10, 9, False)
    admin = record_of(finished(UsageReport(1, 1, True), principal=None), NOW)
    assert admin is not None
    assert admin.api_key is None
    # Refused before any upstream answered: no usage record (the audit log has it).
    assert record_of(finished(None, status=None), NOW) is None


@pytest.fixture
async def gateway_usage(tmp_path: Path) -> Any:
    context = ServerContext(
        config=ServerConfig(state_dir=tmp_path, roles=frozenset({GATEWAY})),
        state_dir=tmp_path,
        store=None,  # type: ignore[arg-type]
        store_url=f"sqlite:///{tmp_path / 'corral.db'}",
        stop=asyncio.Event(),
    )
    context.access = object()  # type: ignore[assignment]  # a gateway process
    extension = UsageExtension(context)
    await extension.start()
    try:
        yield extension
    finally:
        await extension.aclose()


async def test_records_are_written_in_the_background_within_a_flush_interval(
    gateway_usage: UsageExtension,
) -> None:
    async def call_next(call: Call) -> None:
        call.upstream_status = 200
        call.usage = UsageReport(3, 3, True)

    for _ in range(5):
        await gateway_usage.stage(finished(None, status=None), call_next)
    assert gateway_usage.records is not None
    await asyncio.sleep(usage_extension.FLUSH_INTERVAL_S * 5)
    (row,) = await gateway_usage.records.summarize("team", 0, 4e9)
    assert (row.key, row.requests, row.input_tokens, row.output_tokens) == ("search", 5, 15, 15)


async def test_a_full_queue_drops_and_counts_and_close_flushes_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usage_extension, "QUEUE_LIMIT", 3)
    monkeypatch.setattr(usage_extension, "FLUSH_INTERVAL_S", 3600.0)
    context = ServerContext(
        config=ServerConfig(state_dir=tmp_path, roles=frozenset({GATEWAY})),
        state_dir=tmp_path,
        store=None,  # type: ignore[arg-type]
        store_url=f"sqlite:///{tmp_path / 'corral.db'}",
        stop=asyncio.Event(),
    )
    context.access = object()  # type: ignore[assignment]
    extension = UsageExtension(context)
    await extension.start()
    record = record_of(finished(UsageReport(2, 2, True)), NOW)
    assert record is not None
    for _ in range(5):
        extension.enqueue(record)
    assert extension.dropped == 2
    dropped = context.metrics.get_sample_value("corral_usage_records_dropped_total")
    assert dropped == 2
    await extension.aclose()
    reopened = await open_usage_records(f"sqlite:///{tmp_path / 'usage.db'}")
    (row,) = await reopened.summarize("key", 0, 4e9)
    assert row.requests == 3
    await reopened.close()


def test_time_bounds_are_durations_before_now_or_rfc3339_times() -> None:
    assert time_bound("24h", NOW, name="since") == NOW - 86_400
    assert time_bound("90s", NOW, name="since") == NOW - 90
    assert time_bound("2w", NOW, name="since") == NOW - 14 * 86_400
    expected = datetime(2026, 1, 31, 12, tzinfo=UTC).timestamp()
    assert time_bound("2026-01-31T12:00:00Z", NOW, name="since") == expected
    assert time_bound("2026-01-31T13:00:00+01:00", NOW, name="since") == expected
    with pytest.raises(ValueError, match="since 'yesterday': expected a duration like 30m"):
        time_bound("yesterday", NOW, name="since")
    with pytest.raises(ValueError, match="until '2026-01-31': expected a duration"):
        time_bound("2026-01-31", NOW, name="until")
    with pytest.raises(ValueError, match=r"give the time zone \(Z or \+01:00\)"):
        time_bound("2026-01-31T12:00:00", NOW, name="since")
