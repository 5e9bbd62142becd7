"""The PostgreSQL backend: many processes share one database; watch rides on LISTEN/NOTIFY.

Writes serialise on one transaction-level advisory lock taken before the next resourceVersion
is read, so transactions commit in resourceVersion order and a reader that sees version N sees
every version below it: a watcher reading "events after my last" never skips one. Each commit
NOTIFYs its version; one listening connection per store wakes the in-process watchers, which
then read the events table (the notification only says "look", so a lost one costs latency,
never an event). When the listening connection drops, it reconnects and wakes every watcher to
re-read from its last version; ``poll_interval`` bounds the wait in between.

The write rules are in :mod:`corral.store.semantics`; this module reads rows, executes the planned
changes and commits. Keys compare with ``COLLATE "C"`` so lists page in the same byte order as
on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from corral.api.errors import NotFound
from corral.api.objects import Object, ObjectKey, now_rfc3339, object_key
from corral.store.apply import plan_apply, prepare_apply
from corral.store.paging import Pager, check_token_rv, parse_list_query
from corral.store.postgres_sql import (
    CHANNEL,
    EVENT_BATCH,
    HEAD_AND_OBJECT,
    LISTENER_APPLICATION_NAME,
    READ_EVENTS,
    RECORD_CHANGE,
    SCHEMA,
    SCHEMA_LOCK,
    WRITE_LOCK,
    list_statement,
    load,
    redact,
)
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

log = logging.getLogger(__name__)


@dataclass
class _Write:
    connection: Any
    rvs: RvCounter
    current: Object | None  # the object under the key the write was opened for
    recorded: bool = False


_Outcomes = list[ApplyOutcome]  # the class's ``list`` method shadows the builtin inside it
_History = list[HistoryEntry]
_Strings = list[str]
_Objects = list[Object]
_Changes = list[Change]


class PostgresStore:
    """The shared store. Open with :meth:`open` (or ``open_store("postgresql://…")``)."""

    def __init__(self, dsn: str, pool: Any, *, event_retention: int, poll_interval: float) -> None:
        self._dsn = dsn
        self._pool = pool
        self._event_retention = event_retention
        self._poll_interval = poll_interval
        self._signal = ChangeSignal()
        self._closed = False
        self._listener: Any = None
        # Writes queue here, in the process, rather than as many backends blocked on the
        # advisory lock: the server then hands the lock between processes only.
        self._write_gate = asyncio.Lock()
        self._reconnecting: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        event_retention: int = 100_000,
        poll_interval: float = 2.0,
        min_pool_size: int = 1,
        max_pool_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> PostgresStore:
        """Connect, create the schema when missing, and start listening for commits."""
        if event_retention < 1:
            raise ValueError(f"event_retention must be at least 1, got {event_retention}")
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_pool_size, max_size=max_pool_size, timeout=connect_timeout
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise ConnectionError(
                f"cannot connect to PostgreSQL at {redact(dsn)}: {error}"
            ) from error
        store = cls(dsn, pool, event_retention=event_retention, poll_interval=poll_interval)
        try:
            async with pool.acquire() as connection, connection.transaction():
                # Two processes opening a fresh database at once would race on CREATE TABLE.
                await connection.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
                await connection.execute(SCHEMA)
            await store._listen()
        except BaseException:
            await store.close()
            raise
        return store

    # -- reads -----------------------------------------------------------------------------

    async def get(self, kind: str, namespace: str, name: str) -> Object:
        key = ObjectKey(kind, namespace, name)
        data = await self._pool.fetchval(
            "SELECT data FROM corral_objects WHERE kind = $1 AND namespace = $2 AND name = $3",
            *key,
        )
        if data is None:
            raise NotFound(f"{key} not found")
        obj: Object = orjson.loads(data)
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
        pager = Pager(query)
        async with (
            self._pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            head, oldest = await connection.fetchrow(
                "SELECT rv, (SELECT min(rv) FROM corral_events) FROM corral_counter WHERE id = 0"
            )
            resource_version = check_token_rv(query, head, oldest)
            while True:
                rows = await connection.fetch(*list_statement(query, pager.cursor))
                if pager.feed(rows) or query.batch_size is None or len(rows) < query.batch_size:
                    break
        return pager.result(resource_version)

    async def history(self, kind: str, namespace: str, name: str) -> _History:
        rows = await self._pool.fetch(
            "SELECT generation, rv, action, actor, ts, spec, labels, diff FROM corral_history "
            "WHERE kind = $1 AND namespace = $2 AND name = $3 ORDER BY rv",
            kind,
            namespace,
            name,
        )
        return [
            HistoryEntry(
                generation=row[0],
                resource_version=row[1],
                action=row[2],
                actor=row[3],
                timestamp=row[4],
                spec=orjson.loads(row[5]),
                labels=orjson.loads(row[6]),
                diff=orjson.loads(row[7]),
            )
            for row in rows
        ]

    async def current_resource_version(self) -> int:
        return int(await self._pool.fetchval("SELECT rv FROM corral_counter WHERE id = 0"))

    # -- writes ----------------------------------------------------------------------------

    async def create(self, obj: Object, *, actor: str = "") -> Object:
        obj = normalize_input(obj)
        async with self._writing(object_key(obj)) as write:
            change = plan_create(obj, write.current, write.rvs, actor=actor, now=now_rfc3339())
            await self._record(write, [change])
        return change.obj

    async def update(self, obj: Object, *, actor: str = "") -> Object:
        obj = normalize_input(obj)
        async with self._writing(object_key(obj)) as write:
            change = plan_update(obj, write.current, write.rvs, actor=actor, now=now_rfc3339())
            if change is None:
                assert write.current is not None  # only an existing object can be unchanged
                return write.current
            await self._record(write, [change])
        return change.obj

    async def update_status(self, obj: Object) -> Object:
        obj = normalize_input(obj)
        async with self._writing(object_key(obj)) as write:
            change = plan_update_status(obj, write.current, write.rvs)
            if change is None:
                assert write.current is not None
                return write.current
            await self._record(write, [change])
        return change.obj

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
        async with self._writing(key) as write:
            change, reply = plan_delete(
                key,
                write.current,
                write.rvs,
                actor=actor,
                now=now_rfc3339(),
                resource_version=resource_version,
            )
            if change is None:
                return reply
            await self._record(write, [change])
        return reply

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
        async with self._writing() as write:
            current = {}
            for key in request.keys:
                found = await load(write.connection, key)
                if found is not None:
                    current[key] = found
            candidates = [
                orjson.loads(data)
                for kind in request.prune_kinds
                for (data,) in await write.connection.fetch(
                    "SELECT data FROM corral_objects WHERE kind = $1", kind
                )
            ]
            changes, outcomes = plan_apply(
                request, current, candidates, write.rvs, actor=actor, now=now_rfc3339()
            )
            if changes and not dry_run:
                await self._record(write, changes)
        return outcomes

    @contextlib.asynccontextmanager
    async def _writing(self, key: ObjectKey | None = None) -> AsyncIterator[_Write]:
        """A write transaction holding the write lock; it commits only what was recorded.

        Round trips are what the lock is held for, so they are few: BEGIN with the lock, the
        head with the current object, one per change, and the head update with COMMIT.
        """
        self._check_open()
        async with self._write_gate, self._pool.acquire() as connection:
            # The lock is its own statement: the next statement's snapshot then includes every
            # transaction that held the lock before us (READ COMMITTED takes one per statement).
            await connection.execute(
                f"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
            )
            try:
                key_args = key if key is not None else ("", "", "")
                head, data = await connection.fetchrow(HEAD_AND_OBJECT, *key_args)
                current = None if key is None or data is None else orjson.loads(data)
                write = _Write(connection, RvCounter(int(head)), current)
                yield write
                if write.recorded:
                    last = write.rvs.last
                    # Integers only, so inlining them is safe; one round trip ends the write.
                    await connection.execute(
                        f"UPDATE corral_counter SET rv = {last} WHERE id = 0; "
                        f"DELETE FROM corral_events WHERE rv <= {last - self._event_retention}; "
                        f"NOTIFY {CHANNEL}, '{last}'; COMMIT"
                    )
                else:
                    await connection.execute("ROLLBACK")
            except BaseException:
                if not connection.is_closed():
                    with contextlib.suppress(asyncpg.InterfaceError, OSError):
                        await connection.execute("ROLLBACK")
                raise
        if write.recorded:
            self._signal.fire()

    async def _record(self, write: _Write, changes: _Changes) -> None:
        write.recorded = True
        for change in changes:
            entry = change.history
            await write.connection.execute(
                RECORD_CHANGE,
                *change.key,
                change.uid,
                change.rv,
                change.data.decode(),
                change.removed,
                change.event_type,
                None if change.prev_labels is None else change.prev_labels.decode(),
                None if entry is None else entry.generation,
                None if entry is None else entry.action,
                None if entry is None else entry.actor,
                None if entry is None else entry.timestamp,
                None if entry is None else orjson.dumps(entry.spec).decode(),
                None if entry is None else orjson.dumps(entry.labels).decode(),
                None if entry is None else orjson.dumps(entry.diff).decode(),
            )

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

        async def read_events(after: int) -> EventBatch:
            self._check_open()
            rows = await self._pool.fetch(READ_EVENTS, after, kind, namespace, EVENT_BATCH)
            head, oldest = int(rows[0][0]), rows[0][1]
            check_window(after, oldest, head)
            events = [
                EventRow(row[2], row[3], row[4], row[5]) for row in rows if row[2] is not None
            ]
            more = len(events) == EVENT_BATCH
            return EventBatch(events, events[-1].rv if more else head, more)

        return follow(
            read_events,
            self.current_resource_version,
            self._signal,
            lambda: self._closed,
            resource_version=resource_version,
            selector=selector,
            poll_interval=self._poll_interval,
        )

    async def _listen(self) -> None:
        connection = await asyncpg.connect(
            self._dsn, server_settings={"application_name": LISTENER_APPLICATION_NAME}
        )
        try:
            await connection.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            await connection.close()
            raise
        connection.add_termination_listener(self._on_listener_lost)
        self._listener = connection

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, _payload: str) -> None:
        self._signal.fire()

    def _on_listener_lost(self, _connection: Any) -> None:
        if self._closed or self._reconnecting is not None:
            return
        log.warning("lost the PostgreSQL LISTEN connection; reconnecting")
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.05
        try:
            while not self._closed:
                try:
                    await self._listen()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                    log.warning("LISTEN reconnect failed (%s); retrying in %.2fs", error, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                # Anything committed while nobody listened is in the events table: wake every
                # watcher to read it.
                self._signal.fire()
                return
        finally:
            self._reconnecting = None

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the store at {redact(self._dsn)} is closed")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._signal.fire()
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        if self._listener is not None:
            await self._listener.close()
        await self._pool.close()
