"""Finished request traces kept on disk in the state dir, for traces older than the ring buffer.

Written only by the recorder thread, in one transaction per drained batch (group commit: one
fsync for hundreds of rows), never from the request path. The table keeps the newest
``max_rows`` rows, and with ``max_age_s`` only those that started within that many seconds;
queries take the same filters as ``TraceStore.query`` and run on an index over the start
time. The whole record is stored as JSON beside the filter columns, so adding a field to
``TraceRecord`` needs no migration.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from corral.observability.traces import TraceRecord, check_query

_SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    endpoint TEXT NOT NULL,
    team TEXT NOT NULL,
    status INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_started_at ON traces (started_at);
CREATE INDEX IF NOT EXISTS traces_trace_id ON traces (trace_id);
"""


class SqliteTraceStore:
    """Trace records in an SQLite file (WAL), pruned to the newest ``max_rows``."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_rows: int = 100_000,
        max_age_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise ValueError(f"trace database max_rows must be an integer >= 1, got {max_rows!r}")
        if max_age_s is not None and not max_age_s > 0:
            raise ValueError(f"trace database max_age_s must be > 0, got {max_age_s!r}")
        self.path = Path(path)
        self._max_rows = max_rows
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as error:
            raise ValueError(f"trace database {self.path}: cannot open it: {error}") from error
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as error:
            self._db.close()
            raise ValueError(f"trace database {self.path}: {error}") from error

    def write(self, records: Sequence[TraceRecord]) -> None:
        if not records:
            return
        fields = TraceRecord._fields
        # ``to_dict`` without its list copy: orjson writes a tuple (finish_reasons) as a list.
        rows = [
            (
                r.trace_id,
                r.started_at,
                r.endpoint,
                r.team,
                r.status,
                int(r.failed),
                orjson.dumps(dict(zip(fields, r, strict=True))),
            )
            for r in records
        ]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO traces (trace_id, started_at, endpoint, team, status, failed,"
                    " record) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._db.execute(
                    "DELETE FROM traces WHERE seq <= (SELECT max(seq) FROM traces) - ?",
                    (self._max_rows,),
                )
                if self._max_age_s is not None:
                    self._db.execute(
                        "DELETE FROM traces WHERE started_at < ?",
                        (self._clock() - self._max_age_s,),
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def get(self, trace_id: str) -> TraceRecord | None:
        found = self._select("WHERE trace_id = ? ORDER BY seq DESC LIMIT 1", [trace_id])
        return found[0] if found else None

    def query(
        self,
        *,
        endpoint: str | None = None,
        team: str | None = None,
        since: float | None = None,
        until: float | None = None,
        status: int | None = None,
        failed: bool | None = None,
        limit: int = 100,
    ) -> list[TraceRecord]:
        """Like ``TraceStore.query``: every given filter, newest first, at most ``limit``."""
        check_query(since, until, limit)
        clauses: list[str] = []
        params: list[Any] = []
        for column, operator, value in (
            ("endpoint", "=", endpoint),
            ("team", "=", team),
            ("started_at", ">=", since),
            ("started_at", "<", until),
            ("status", "=", status),
            ("failed", "=", None if failed is None else int(failed)),
        ):
            if value is not None:
                clauses.append(f"{column} {operator} ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        return self._select(f"{where}ORDER BY started_at DESC, seq DESC LIMIT ?", [*params, limit])

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM traces").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _select(self, tail: str, params: list[Any]) -> list[TraceRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT record FROM traces {tail}", params).fetchall()
        return [_record(row[0]) for row in rows]


def _record(blob: bytes) -> TraceRecord:
    fields = orjson.loads(blob)
    fields["finish_reasons"] = tuple(fields["finish_reasons"])
    return TraceRecord(**fields)
