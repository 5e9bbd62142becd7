"""Usage records on SQLite and PostgreSQL: batches appended, sums by team, key, model and
endpoint over a time range. PostgreSQL that cannot be reached fails the test (never skipped).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from corral.store.usage_records import UsageRecord, UsageRow, open_usage_records

T0 = 1_700_000_000.0


def record(**fields: Any) -> UsageRecord:
    base: dict[str, Any] = {
        "at": T0,
        "namespace": "default",
        "endpoint": "chat",
        "request_model": "chat",
        "served_model": "smol-v1",
        "principal_kind": "team-key",
        "principal_id": "default/search-key",
        "team": "search",
        "api_key": "default/search-key",
        "input_tokens": 10,
        "output_tokens": 5,
        "exact": True,
        "cost_usd": 0.25,
        "status": 200,
        "stream": False,
    }
    return UsageRecord(**{**base, **fields})


@pytest.fixture(params=["sqlite", "postgres"])
async def records(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_database: str
) -> AsyncIterator[Any]:
    name = f"t_{secrets.token_hex(6)}"
    sqlite = f"sqlite:///{tmp_path / 'usage.db'}"
    url = sqlite if request.param == "sqlite" else postgres_database
    opened = await open_usage_records(url, name=name)
    try:
        yield opened
    finally:
        await opened.close()
        if request.param == "postgres":
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(f"DROP TABLE IF EXISTS {name}")
            finally:
                await conn.close()


async def test_sums_by_each_grouping_over_the_time_range(records: Any) -> None:
    await records.append(
        [
            record(),
            record(at=T0 + 1, input_tokens=20, output_tokens=7, cost_usd=None),
            record(
                at=T0 + 2, team="ads", api_key=None, principal_kind="workload",
                principal_id="spiffe://corral/ns/default/agent/bot", endpoint="embed",
                request_model="embed", served_model=None, cost_usd=None, stream=True,
            ),
            record(at=T0 + 3600, team="late"),
        ]
    )  # fmt: skip
    by_team = await records.summarize("team", T0, T0 + 60)
    assert by_team == [
        UsageRow("search", 2, 30, 12, 0.25),
        UsageRow("ads", 1, 10, 5, None),
    ]
    by_key = await records.summarize("key", T0, T0 + 60)
    assert [row.key for row in by_key] == [
        "default/search-key",
        "workload:spiffe://corral/ns/default/agent/bot",
    ]
    by_model = await records.summarize("model", T0, T0 + 60)
    assert {row.key: row.requests for row in by_model} == {"smol-v1": 2, "embed": 1}
    by_endpoint = await records.summarize("endpoint", T0, T0 + 7200)
    assert {row.key: row.requests for row in by_endpoint} == {"default/chat": 3, "default/embed": 1}
    assert await records.summarize("team", T0 + 10, T0 + 20) == []
    assert by_team[0].to_json() == {
        "key": "search",
        "requests": 2,
        "input_tokens": 30,
        "output_tokens": 12,
        "cost_usd": 0.25,
    }


async def test_a_large_batch_is_one_append(records: Any) -> None:
    await records.append([record(at=T0 + i / 1000, output_tokens=i) for i in range(2000)])
    (row,) = await records.summarize("team", T0, T0 + 10)
    assert (row.requests, row.input_tokens, row.output_tokens) == (2000, 20_000, sum(range(2000)))
    await records.append([])


async def test_an_unknown_grouping_is_refused(records: Any) -> None:
    with pytest.raises(ValueError, match="cannot group usage by 'colour'"):
        await records.summarize("colour", T0, T0 + 1)


async def test_urls_it_cannot_use_are_refused_with_examples() -> None:
    with pytest.raises(ValueError, match=r"use postgresql://user@host/db or sqlite:///path.db"):
        await open_usage_records("redis://localhost")
    with pytest.raises(ValueError, match=r"write sqlite:///relative.db"):
        await open_usage_records("sqlite://")
