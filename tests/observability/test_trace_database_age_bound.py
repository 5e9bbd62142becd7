"""The trace database forgets traces older than ``max_age_s`` (``CORRAL_TRACES_MAX_AGE``) when
it next writes, on its own clock, beside the newest-``max_rows`` bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.observability import SqliteTraceStore

from .helpers import trace_record


def test_old_traces_leave_on_the_next_write(tmp_path: Path) -> None:
    now = [10_000.0]
    store = SqliteTraceStore(
        tmp_path / "traces.db", max_rows=100, max_age_s=3600, clock=lambda: now[0]
    )
    try:
        old = trace_record(1, started_at=now[0] - 7200)
        recent = trace_record(2, started_at=now[0] - 60)
        store.write([old, recent])
        assert [record.trace_id for record in store.query()] == [recent.trace_id]
        now[0] += 3600  # an hour later the recent one is old too
        newest = trace_record(3, started_at=now[0])
        store.write([newest])
        assert [record.trace_id for record in store.query()] == [newest.trace_id]
        assert store.get(old.trace_id) is None
    finally:
        store.close()


def test_both_bounds_apply_together(tmp_path: Path) -> None:
    store = SqliteTraceStore(
        tmp_path / "traces.db", max_rows=2, max_age_s=3600, clock=lambda: 10_000.0
    )
    try:
        store.write([trace_record(n, started_at=9_000.0 + n) for n in range(5)])
        assert len(store) == 2
    finally:
        store.close()


def test_a_bad_age_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_age_s"):
        SqliteTraceStore(tmp_path / "traces.db", max_age_s=0)
