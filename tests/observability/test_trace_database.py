from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.observability import SqliteTraceStore, Telemetry, TelemetryConfig, TraceStore

from .helpers import chat_info, trace_record

RECORDS = [
    trace_record(1),
    trace_record(2, team="ads"),
    trace_record(3, endpoint="embed", operation="embeddings"),
    trace_record(4, status=429),
    trace_record(5, error="stream_cut"),
    trace_record(6, team="ads", endpoint="embed", finish_reasons=("stop", "length")),
]


@pytest.fixture
def database(tmp_path: Path) -> Iterator[SqliteTraceStore]:
    store = SqliteTraceStore(tmp_path / "traces.db")
    store.write(RECORDS)
    yield store
    store.close()


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"endpoint": "embed"},
        {"team": "ads"},
        {"team": "ads", "endpoint": "embed"},
        {"since": 1002.0, "until": 1005.0},
        {"status": 429},
        {"failed": True},
        {"failed": False, "team": "search"},
        {"limit": 2},
        {"team": "nobody"},
    ],
)
def test_the_database_answers_queries_as_the_ring_buffer_does(
    database: SqliteTraceStore, filters: dict[str, Any]
) -> None:
    memory = TraceStore(100)
    for record in RECORDS:
        memory.append(record)
    assert database.query(**filters) == memory.query(**filters)


def test_records_survive_reopening_and_are_found_by_trace_id(
    database: SqliteTraceStore, tmp_path: Path
) -> None:
    database.close()
    reopened = SqliteTraceStore(tmp_path / "traces.db")
    try:
        assert reopened.get(RECORDS[5].trace_id) == RECORDS[5]
        assert reopened.get("f" * 32) is None
        assert len(reopened) == 6
    finally:
        reopened.close()


def test_the_database_keeps_only_the_newest_rows(tmp_path: Path) -> None:
    store = SqliteTraceStore(tmp_path / "traces.db", max_rows=4)
    try:
        store.write(RECORDS[:3])
        store.write(RECORDS[3:])
        assert len(store) == 4
        assert [r.trace_id for r in store.query()] == [r.trace_id for r in RECORDS[:1:-1]]
    finally:
        store.close()


def test_finished_requests_reach_the_configured_database(tmp_path: Path) -> None:
    config = TelemetryConfig(trace_db_path=tmp_path / "traces.db", capture_content=True)
    with Telemetry(config) as telemetry:
        assert telemetry.recorder is not None  # runs for the database even with export off
        request = telemetry.start(chat_info())
        request.usage(3, 5)
        request.output_text("hello")
        in_memory = request.finish(200)
        telemetry.force_flush()
        assert telemetry.persisted is not None
        assert telemetry.persisted.query() == [in_memory]


def test_bad_database_settings_say_what_is_wrong(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "traces.db"
    with pytest.raises(ValueError, match=r"trace database .*no-such-dir.*: cannot open it"):
        SqliteTraceStore(missing)
    with pytest.raises(ValueError, match="max_rows must be an integer >= 1, got 0"):
        SqliteTraceStore(tmp_path / "traces.db", max_rows=0)
    with pytest.raises(ValueError, match="trace_db_max_rows: must be an integer >= 1"):
        TelemetryConfig(trace_db_max_rows=-5)
