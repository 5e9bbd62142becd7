"""The SQLite backend: one file, one process writing at a time, watch woken in-process.

Every statement runs on one dedicated thread that owns the connection, so the event loop never
blocks on the database and writes execute in the order they were awaited. The write rules are in
:mod:`corral.store.semantics`; this module reads rows, executes the planned changes and commits.

Durability: WAL with ``synchronous=NORMAL``. A commit that returned survives the process being
killed (``kill -9``) because the WAL is in the OS page cache; power loss or an OS crash may lose
the last commits (``synchronous=FULL`` would cover that at a fifth of the write rate), which is
out of scope for the embedded store.

Watchers in this process are woken right after each commit; writers in other processes sharing
the file are seen within ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import orjson

from corral.api.errors import NotFound
from corral.api.objects import Object, ObjectKey, now_rfc3339, object_key
from corral.store.apply import plan_apply, prepare_apply
from corral.store.paging import ListQuery, Pager, check_token_rv, parse_list_query
from corral.store.protocol import ApplyOutcome, HistoryEntry, ListResult, WatchEvent
from corral.store.selectors import selector_or_none
from corral.store.semantics import (
    Change,
    RvCounter,
    normalize_input,
    plan_create,
    plan_delete,
    plan_update,
    plan_update_status,
)
from corral.store.watching import ChangeSignal, EventBatch, EventRow, check_window, follow

P = ParamSpec("P")
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 0), rv INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (id, rv) VALUES (0, 0);
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

# The class defines a ``list`` method (the protocol's name), which shadows the builtin inside it.
_Objects = list[Object]
_Changes = list[Change]
_Outcomes = list[ApplyOutcome]
_History = list[HistoryEntry]
_Strings = list[str]


class SqliteStore:
    """The embedded store. Open with :meth:`open` (or ``open_store("sqlite:///path.db")``)."""

    def __init__(
        self,
        path: str,
        executor: ThreadPoolExecutor,
        connection: sqlite3.Connection,
        *,
        event_retention: int,
        poll_interval: float,
    ) -> None:
        self.path = path
        self._executor = executor
        self._db = connection
        self._event_retention = event_retention
        self._poll_interval = poll_interval
        self._signal = ChangeSignal()
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        event_retention: int = 100_000,
        poll_interval: float = 1.0,
        busy_timeout: float = 10.0,
    ) -> SqliteStore:
        """Open (creating the file, its directory and the schema as needed)."""
        if event_retention < 1:
            raise ValueError(f"event_retention must be at least 1, got {event_retention}")
        location = str(path)
        if location != ":memory:":
            Path(location).parent.mkdir(parents=True, exist_ok=True)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="corral-sqlite")
        loop = asyncio.get_running_loop()
        try:
            connection = await loop.run_in_executor(
                executor, partial(_connect, location, busy_timeout)
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(
            location,
            executor,
            connection,
            event_retention=event_retention,
            poll_interval=poll_interval,
        )

    async def _run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._closed:
            raise RuntimeError(f"the store at {self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(function, *args, **kwargs))

    async def _write(
        self, function: Callable[P, tuple[T, bool]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        result, wrote = await self._run(function, *args, **kwargs)
        if wrote:
            self._signal.fire()
        return result

    # -- reads -----------------------------------------------------------------------------

    async def get(self, kind: str, namespace: str, name: str) -> Object:
        obj = await self._run(self._load, ObjectKey(kind, namespace, name))
        if obj is None:
            raise NotFound(f"{ObjectKey(kind, namespace, name)} not found")
        return obj

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        query = parse_list_query(kind, namespace, label_selector, limit, continue_token)
        return await self._run(self._list_sync, query)

    async def history(self, kind: str, namespace: str, name: str) -> _History:
        return await self._run(self._history_sync, ObjectKey(kind, namespace, name))

    async def current_resource_version(self) -> int:
        return await self._run(self._head)

    # -- writes ----------------------------------------------------------------------------

    async def create(self, obj: Object, *, actor: str = "") -> Object:
        return await self._write(self._create_sync, normalize_input(obj), actor)

    async def update(self, obj: Object, *, actor: str = "") -> Object:
        return await self._write(self._update_sync, normalize_input(obj), actor)

    async def update_status(self, obj: Object) -> Object:
        return await self._write(self._update_status_sync, normalize_input(obj))

    async def delete(
        self,
        kind: str,
        namespace: str,
        name: str,
        *,
        actor: str = "",
        resource_version: str | None = None,
    ) -> Object:
        key = ObjectKey(kind, namespace, name)
        return await self._write(self._delete_sync, key, actor, resource_version)

    async def apply(
        self,
        objects: _Objects,
        *,
        actor: str = "",
        dry_run: bool = False,
        prune_selector: str | None = None,
        prune_kinds: _Strings | None = None,
    ) -> _Outcomes:
        request = prepare_apply(objects, prune_selector, prune_kinds)

        def apply_sync() -> tuple[_Outcomes, bool]:
            with self._transaction(write=not dry_run) as rvs:
                current = {key: obj for key in request.keys if (obj := self._load(key))}
                candidates = [obj for kind in request.prune_kinds for obj in self._all_of(kind)]
                changes, outcomes = plan_apply(
                    request, current, candidates, rvs, actor=actor, now=now_rfc3339()
                )
                if not dry_run:
                    self._record(changes, rvs)
            return outcomes, bool(changes) and not dry_run

        return await self._write(apply_sync)

    # -- watch -----------------------------------------------------------------------------

    def watch(
        self,
        kind: str | None = None,
        namespace: str | None = None,
        *,
        resource_version: int | None = None,
        label_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        selector = selector_or_none(label_selector)
        return follow(
            lambda after: self._run(self._read_events, after, kind, namespace),
            self.current_resource_version,
            self._signal,
            lambda: self._closed,
            resource_version=resource_version,
            selector=selector,
            poll_interval=self._poll_interval,
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._signal.fire()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._db.close)
        self._executor.shutdown(wait=True)

    # -- on the database thread ------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[RvCounter]:
        # IMMEDIATE takes the write lock up front, so the head read below cannot go stale.
        self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield RvCounter(self._head())
            self._db.execute("COMMIT" if write else "ROLLBACK")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _head(self) -> int:
        row = self._db.execute("SELECT rv FROM meta WHERE id = 0").fetchone()
        return int(row[0])

    def _oldest_event(self) -> int | None:
        row = self._db.execute("SELECT min(rv) FROM events").fetchone()
        return None if row[0] is None else int(row[0])

    def _load(self, key: ObjectKey) -> Object | None:
        row = self._db.execute(
            "SELECT data FROM objects WHERE kind = ? AND namespace = ? AND name = ?", key
        ).fetchone()
        return None if row is None else orjson.loads(row[0])

    def _all_of(self, kind: str) -> _Objects:
        rows = self._db.execute("SELECT data FROM objects WHERE kind = ?", (kind,))
        return [orjson.loads(data) for (data,) in rows]

    def _record(self, changes: _Changes, rvs: RvCounter) -> None:
        db = self._db
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
            db.execute("UPDATE meta SET rv = ? WHERE id = 0", (rvs.last,))
            db.execute("DELETE FROM events WHERE rv <= ?", (rvs.last - self._event_retention,))

    def _create_sync(self, obj: Object, actor: str) -> tuple[Object, bool]:
        with self._transaction(write=True) as rvs:
            change = plan_create(
                obj, self._load(object_key(obj)), rvs, actor=actor, now=now_rfc3339()
            )
            self._record([change], rvs)
        return change.obj, True

    def _update_sync(self, obj: Object, actor: str) -> tuple[Object, bool]:
        with self._transaction(write=True) as rvs:
            current = self._load(object_key(obj))
            change = plan_update(obj, current, rvs, actor=actor, now=now_rfc3339())
            if change is not None:
                self._record([change], rvs)
        return (change.obj, True) if change else (_present(current), False)

    def _update_status_sync(self, obj: Object) -> tuple[Object, bool]:
        with self._transaction(write=True) as rvs:
            current = self._load(object_key(obj))
            change = plan_update_status(obj, current, rvs)
            if change is not None:
                self._record([change], rvs)
        return (change.obj, True) if change else (_present(current), False)

    def _delete_sync(
        self, key: ObjectKey, actor: str, resource_version: str | None
    ) -> tuple[Object, bool]:
        with self._transaction(write=True) as rvs:
            change, reply = plan_delete(
                key,
                self._load(key),
                rvs,
                actor=actor,
                now=now_rfc3339(),
                resource_version=resource_version,
            )
            if change is not None:
                self._record([change], rvs)
        return reply, change is not None

    def _list_sync(self, query: ListQuery) -> ListResult:
        pager = Pager(query)
        with self._transaction(write=False) as rvs:
            resource_version = check_token_rv(query, rvs.head, self._oldest_event())
            namespace_clause = "" if query.namespace is None else " AND namespace = ?"
            namespace_args = () if query.namespace is None else (query.namespace,)
            cursor_args: tuple[str, ...]
            while True:
                cursor_clause, cursor_args = "", ()
                if pager.cursor is not None:
                    cursor_clause, cursor_args = " AND (namespace, name) > (?, ?)", pager.cursor
                limit_clause = "" if query.batch_size is None else f" LIMIT {query.batch_size}"
                rows = self._db.execute(
                    "SELECT namespace, name, data FROM objects WHERE kind = ?"
                    f"{namespace_clause}{cursor_clause} ORDER BY namespace, name{limit_clause}",
                    (query.kind, *namespace_args, *cursor_args),
                ).fetchall()
                if pager.feed(rows) or query.batch_size is None or len(rows) < query.batch_size:
                    break
        return pager.result(resource_version)

    def _history_sync(self, key: ObjectKey) -> _History:
        rows = self._db.execute(
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

    def _read_events(self, after: int, kind: str | None, namespace: str | None) -> EventBatch:
        clauses = ["rv > ?"]
        args: list[Any] = [after]
        if kind is not None:
            clauses.append("kind = ?")
            args.append(kind)
        if namespace is not None:
            clauses.append("namespace = ?")
            args.append(namespace)
        with self._transaction(write=False) as rvs:
            check_window(after, self._oldest_event(), rvs.head)
            rows = self._db.execute(
                "SELECT rv, type, data, prev_labels FROM events "
                f"WHERE {' AND '.join(clauses)} ORDER BY rv LIMIT {EVENT_BATCH}",
                args,
            ).fetchall()
        more = len(rows) == EVENT_BATCH
        return EventBatch([EventRow(*row) for row in rows], rows[-1][0] if more else rvs.head, more)


def _present(obj: Object | None) -> Object:
    assert obj is not None  # a plan returns no change only for an object it found
    return obj


def _connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE … COMMIT) so the module
    # never opens one behind our back.
    connection = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        if path != ":memory:":
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"cannot enable WAL on {path} (journal_mode is {mode})")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")
    except BaseException:
        connection.close()
        raise
    return connection
