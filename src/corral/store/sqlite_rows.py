"""SQLite statements: the rows behind :class:`~corral.store.sqlite.SqliteStore`, synchronous.

Each public method is one complete transaction (BEGIN … COMMIT or ROLLBACK) that the store runs
either on the event loop or on its worker thread; nothing here awaits, so a transaction never
spans a suspension point and two store instances in one process cannot interleave inside one.
The write rules come from :mod:`corral.store.semantics` and :mod:`corral.store.apply`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import orjson

from corral.api.objects import Object, ObjectKey, now_rfc3339, object_key
from corral.store.apply import ApplyRequest, plan_apply
from corral.store.paging import ListQuery, Pager, check_token_rv
from corral.store.protocol import ApplyOutcome, HistoryEntry, ListResult
from corral.store.semantics import (
    Change,
    RvCounter,
    plan_create,
    plan_delete,
    plan_update,
    plan_update_status,
)
from corral.store.watching import EventBatch, EventRow, check_window

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    uid TEXT NOT NULL, rv INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS events (
    rv INTEGER PRIMARY KEY, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    type TEXT NOT NULL, data BLOB NOT NULL, prev_labels BLOB
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    generation INTEGER NOT NULL, rv INTEGER NOT NULL, action TEXT NOT NULL, actor TEXT NOT NULL,
    ts TEXT NOT NULL, spec BLOB NOT NULL, labels BLOB NOT NULL, diff BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_object ON history (kind, namespace, name, rv);
"""
EVENT_BATCH = 500


class SqliteDatabase:
    """One connection and the transactions the store runs on it."""

    def __init__(self, connection: sqlite3.Connection, *, event_retention: int) -> None:
        self.connection = connection
        self.event_retention = event_retention

    @contextlib.contextmanager
    def transaction(self, *, write: bool) -> Iterator[RvCounter]:
        # IMMEDIATE takes the write lock up front, so the head read below cannot go stale.
        self.connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield RvCounter(self.head())
            self.connection.execute("COMMIT" if write else "ROLLBACK")
        except BaseException:
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
            raise

    def head(self) -> int:
        # The newest event is the head: compaction always keeps at least one, and a separate
        # counter row would add a page to every commit's WAL write (~15% of its cost).
        row = self.connection.execute("SELECT coalesce(max(rv), 0) FROM events").fetchone()
        return int(row[0])

    def oldest_event(self) -> int | None:
        row = self.connection.execute("SELECT min(rv) FROM events").fetchone()
        return None if row[0] is None else int(row[0])

    def load(self, key: ObjectKey) -> Object | None:
        row = self.connection.execute(
            "SELECT data FROM objects WHERE kind = ? AND namespace = ? AND name = ?", key
        ).fetchone()
        return None if row is None else orjson.loads(row[0])

    def all_of(self, kind: str) -> list[Object]:
        rows = self.connection.execute("SELECT data FROM objects WHERE kind = ?", (kind,))
        return [orjson.loads(data) for (data,) in rows]

    def record(self, changes: list[Change], rvs: RvCounter) -> None:
        db = self.connection
        for change in changes:
            if change.removed:
                db.execute(
                    "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                    change.key,
                )
            else:
                db.execute(
                    "INSERT INTO objects (kind, namespace, name, uid, rv, data) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, namespace, name) "
                    "DO UPDATE SET uid = excluded.uid, rv = excluded.rv, data = excluded.data",
                    (*change.key, change.uid, change.rv, change.data),
                )
            db.execute(
                "INSERT INTO events (rv, kind, namespace, name, type, data, prev_labels) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (change.rv, *change.key, change.event_type, change.data, change.prev_labels),
            )
            if change.history is not None:
                entry = change.history
                db.execute(
                    "INSERT INTO history (kind, namespace, name, generation, rv, action, actor, "
                    "ts, spec, labels, diff) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        *change.key,
                        entry.generation,
                        change.rv,
                        entry.action,
                        entry.actor,
                        entry.timestamp,
                        orjson.dumps(entry.spec),
                        orjson.dumps(entry.labels),
                        orjson.dumps(entry.diff),
                    ),
                )
        if rvs.taken:
            db.execute("DELETE FROM events WHERE rv <= ?", (rvs.last - self.event_retention,))

    def create(self, obj: Object, actor: str) -> tuple[Object, bool]:
        with self.transaction(write=True) as rvs:
            change = plan_create(
                obj, self.load(object_key(obj)), rvs, actor=actor, now=now_rfc3339()
            )
            self.record([change], rvs)
        return change.obj, True

    def update(self, obj: Object, actor: str) -> tuple[Object, bool]:
        with self.transaction(write=True) as rvs:
            current = self.load(object_key(obj))
            change = plan_update(obj, current, rvs, actor=actor, now=now_rfc3339())
            if change is not None:
                self.record([change], rvs)
        return (change.obj, True) if change else (present(current), False)

    def update_status(self, obj: Object) -> tuple[Object, bool]:
        with self.transaction(write=True) as rvs:
            current = self.load(object_key(obj))
            change = plan_update_status(obj, current, rvs)
            if change is not None:
                self.record([change], rvs)
        return (change.obj, True) if change else (present(current), False)

    def delete(
        self, key: ObjectKey, actor: str, resource_version: str | None
    ) -> tuple[Object, bool]:
        with self.transaction(write=True) as rvs:
            change, reply = plan_delete(
                key,
                self.load(key),
                rvs,
                actor=actor,
                now=now_rfc3339(),
                resource_version=resource_version,
            )
            if change is not None:
                self.record([change], rvs)
        return reply, change is not None

    def apply(
        self, request: ApplyRequest, *, actor: str, dry_run: bool
    ) -> tuple[list[ApplyOutcome], bool]:
        with self.transaction(write=not dry_run) as rvs:
            current = {key: obj for key in request.keys if (obj := self.load(key))}
            candidates = [obj for kind in request.prune_kinds for obj in self.all_of(kind)]
            changes, outcomes = plan_apply(
                request, current, candidates, rvs, actor=actor, now=now_rfc3339()
            )
            if not dry_run:
                self.record(changes, rvs)
        return outcomes, bool(changes) and not dry_run

    def list_page(self, query: ListQuery) -> ListResult:
        pager = Pager(query)
        with self.transaction(write=False) as rvs:
            resource_version = check_token_rv(query, rvs.head, self.oldest_event())
            namespace_clause = "" if query.namespace is None else " AND namespace = ?"
            namespace_args = () if query.namespace is None else (query.namespace,)
            cursor_args: tuple[str, ...]
            while True:
                cursor_clause, cursor_args = "", ()
                if pager.cursor is not None:
                    cursor_clause, cursor_args = " AND (namespace, name) > (?, ?)", pager.cursor
                limit_clause = "" if query.batch_size is None else f" LIMIT {query.batch_size}"
                rows = self.connection.execute(
                    "SELECT namespace, name, data FROM objects WHERE kind = ?"
                    f"{namespace_clause}{cursor_clause} ORDER BY namespace, name{limit_clause}",
                    (query.kind, *namespace_args, *cursor_args),
                ).fetchall()
                if pager.feed(rows) or query.batch_size is None or len(rows) < query.batch_size:
                    break
        return pager.result(resource_version)

    def history(self, key: ObjectKey) -> list[HistoryEntry]:
        rows = self.connection.execute(
            "SELECT generation, rv, action, actor, ts, spec, labels, diff FROM history "
            "WHERE kind = ? AND namespace = ? AND name = ? ORDER BY rv",
            key,
        ).fetchall()
        return [
            HistoryEntry(
                generation=generation,
                resource_version=rv,
                action=action,
                actor=actor,
                timestamp=ts,
                spec=orjson.loads(spec),
                labels=orjson.loads(labels),
                diff=orjson.loads(diff),
            )
            for generation, rv, action, actor, ts, spec, labels, diff in rows
        ]

    def read_events(self, after: int, kind: str | None, namespace: str | None) -> EventBatch:
        clauses = ["rv > ?"]
        args: list[Any] = [after]
        if kind is not None:
            clauses.append("kind = ?")
            args.append(kind)
        if namespace is not None:
            clauses.append("namespace = ?")
            args.append(namespace)
        with self.transaction(write=False) as rvs:
            check_window(after, self.oldest_event(), rvs.head)
            rows = self.connection.execute(
                "SELECT rv, type, data, prev_labels FROM events "
                f"WHERE {' AND '.join(clauses)} ORDER BY rv LIMIT {EVENT_BATCH}",
                args,
            ).fetchall()
        more = len(rows) == EVENT_BATCH
        return EventBatch([EventRow(*row) for row in rows], rows[-1][0] if more else rvs.head, more)


def present(obj: Object | None) -> Object:
    assert obj is not None  # a plan returns no change only for an object it found
    return obj


def connect(path: str, *, busy_timeout: float, autocheckpoint: bool = True) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with the schema in place.

    ``isolation_level=None``: transactions are explicit (BEGIN IMMEDIATE … COMMIT) so the module
    never opens one behind our back. The connection is used from the loop and the worker thread,
    never both at once (the store's lock), hence ``check_same_thread=False``.
    """
    connection = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        if path != ":memory:":
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"cannot enable WAL on {path} (journal_mode is {mode})")
        connection.execute("PRAGMA synchronous=NORMAL")
        if not autocheckpoint:
            # The store checkpoints from its worker thread on another connection, so no commit
            # on the event loop ever waits for the database file to be written and synced.
            connection.execute("PRAGMA wal_autocheckpoint=0")
        connection.executescript(f"BEGIN IMMEDIATE;{SCHEMA}COMMIT;")
    except BaseException:
        connection.close()
        raise
    return connection


def checkpoint(connection: sqlite3.Connection) -> None:
    """Copy the WAL into the database file without waiting for readers or writers."""
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()


def is_busy(error: sqlite3.OperationalError) -> bool:
    """Another connection (another process) holds the lock we need."""
    return "locked" in str(error) or "busy" in str(error)
