"""Audit log tables (:class:`corral.audit.AuditStorage`) on SQLite and PostgreSQL.

``open_audit_storage(url)`` takes the store's URL forms (``sqlite:///path``,
``postgresql://…``) and opens its own connection; the tables sit beside the store's.

Records are rows of their fields (queryable: who, what, which resource), the policies and
details as canonical JSON text and the hashes as bytes; nothing here updates or deletes. Each
append takes the write lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL transaction advisory
lock), reads the head and inserts the batch in one transaction, so writers in several
processes still produce one dense chain. ``audit_keys`` publishes the public half of each key
that signs checkpoints, so a verifier can learn every writer's key from any server on the log.
Triggers make the database refuse UPDATE, DELETE (and on PostgreSQL TRUNCATE) on every table.
SQLite runs ``synchronous=FULL`` so a returned append survives power loss, and does its work on
one worker thread to keep the event loop free.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import orjson

from corral.audit import AuditRecord, BuildRecords, ChainHead, Checkpoint
from corral.audit.wire import (
    CHECKPOINT_COLUMNS,
    RECORD_COLUMNS,
    checkpoint_from_row,
    record_from_row,
)
from corral.store.urls import sqlite_path

PAGE = 2000
_NO_END = 2**63 - 1
_ADVISORY_KEY = 0x636F7272616C  # "corral": the audit writers' lock, apart from the store's
_COLUMNS = RECORD_COLUMNS
_HEAD = "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
_CHECKPOINTS = f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY size"
_LAST_CHECKPOINT = _CHECKPOINTS + " DESC LIMIT 1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_records (
    seq BIGINT PRIMARY KEY, time TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    resource TEXT NOT NULL, decision TEXT NOT NULL, policy TEXT NOT NULL,
    cost DOUBLE PRECISION NOT NULL, details TEXT NOT NULL, prev_hash {blob} NOT NULL,
    hash {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size BIGINT PRIMARY KEY, root_hash {blob} NOT NULL, time TEXT NOT NULL, kid TEXT NOT NULL,
    signature {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS audit_keys (
    kid TEXT PRIMARY KEY, public_key TEXT NOT NULL, added TEXT NOT NULL);
"""
_GUARDED = ("audit_records", "audit_checkpoints", "audit_keys")
_KEYS = "SELECT kid, public_key FROM audit_keys ORDER BY added, kid"
# The database itself refuses changes, so a bug or a stray script cannot rewrite history; whoever
# can drop these triggers can tamper, and verify() is what catches that.
_SQLITE_GUARDS = "".join(
    f"""
CREATE TRIGGER IF NOT EXISTS {table}_no_{operation} BEFORE {operation.upper()} ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END;"""
    for table in _GUARDED
    for operation in ("update", "delete")
)
_POSTGRES_GUARDS = """
CREATE OR REPLACE FUNCTION corral_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP; END $$;
""" + "".join(
    f"""
CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {table}
FOR EACH STATEMENT EXECUTE FUNCTION corral_audit_append_only();"""
    for table in _GUARDED
)


async def open_audit_storage(url: str) -> SqliteAuditStorage | PostgresAuditStorage:
    """Audit storage at ``url``; ValueError for a URL it cannot use."""
    scheme = url.split("://", 1)[0].lower() if isinstance(url, str) and "://" in url else ""
    if scheme == "sqlite":
        return await SqliteAuditStorage.open(sqlite_path(url))
    if scheme in ("postgresql", "postgres"):
        return await PostgresAuditStorage.open(url)
    raise ValueError(
        f"audit storage URL {url!r}: use sqlite:///path.db or postgresql://user@host:5432/db"
    )


def _row(record: AuditRecord) -> tuple[Any, ...]:
    columns = record.columns  # encoded by seal() along with the record's canonical bytes
    if columns is None:
        columns = (
            orjson.dumps(list(record.policies)).decode(),
            orjson.dumps(record.details, option=orjson.OPT_SORT_KEYS).decode(),
        )
    return (
        record.seq,
        record.time,
        record.actor,
        record.action,
        record.resource,
        record.decision,
        columns[0],
        record.cost,
        columns[1],
        record.prev_hash,
        record.hash,
    )


def _head(row: Sequence[Any] | None) -> ChainHead:
    if row is None:
        return ChainHead(0, bytes(32))
    return ChainHead(row[0] + 1, bytes(row[1]))


class SqliteAuditStorage:
    def __init__(self, path: str, connection: sqlite3.Connection, thread: ThreadPoolExecutor):
        self.path = path
        self._connection = connection
        self._thread = thread
        self._closed = False

    @classmethod
    async def open(cls, path: str, *, busy_timeout: float = 30.0) -> SqliteAuditStorage:
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-sqlite")

        def connect() -> sqlite3.Connection:
            connection = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=FULL")
                connection.executescript(_SCHEMA.format(blob="BLOB") + _SQLITE_GUARDS)
            except BaseException:
                connection.close()
                raise
            return connection

        try:
            connection = await asyncio.get_running_loop().run_in_executor(thread, connect)
        except BaseException:
            thread.shutdown()
            raise
        return cls(path, connection, thread)

    async def _run(self, work: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    async def append(self, build: BuildRecords) -> Sequence[AuditRecord]:
        def write() -> Sequence[AuditRecord]:
            connection = self._connection
            connection.execute("BEGIN IMMEDIATE")
            try:
                records = build(_head(connection.execute(_HEAD).fetchone()))
                connection.executemany(
                    f"INSERT INTO audit_records ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    [_row(record) for record in records],
                )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            return records

        result: Sequence[AuditRecord] = await self._run(write)
        return result

    async def head(self) -> ChainHead:
        row = await self._run(lambda: self._connection.execute(_HEAD).fetchone())
        return _head(row)

    async def records(self, start: int = 0, stop: int | None = None) -> AsyncIterator[AuditRecord]:
        upper = _NO_END if stop is None else stop
        while True:
            page = await self._run(self._select, _COLUMNS, start, upper, PAGE)
            for row in page:
                yield record_from_row(row)
            if len(page) < PAGE:
                return
            start = page[-1][0] + 1

    def _select(self, columns: str, start: int, stop: int, limit: int) -> list[Any]:
        return self._connection.execute(
            f"SELECT {columns} FROM audit_records WHERE seq >= ? AND seq < ? ORDER BY seq LIMIT ?",
            (start, stop, limit),
        ).fetchall()

    async def leaf_hashes(self, start: int, stop: int) -> list[bytes]:
        rows = await self._run(self._select, "hash", start, stop, -1)
        return [bytes(row[0]) for row in rows]

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        await self._run(
            self._connection.execute,
            "INSERT INTO audit_checkpoints (size, root_hash, time, kid, signature) "
            "VALUES (?,?,?,?,?) ON CONFLICT (size) DO NOTHING",
            _checkpoint_row(checkpoint),
        )

    async def checkpoints(self) -> list[Checkpoint]:
        rows = await self._run(lambda: self._connection.execute(_CHECKPOINTS).fetchall())
        return [checkpoint_from_row(row) for row in rows]

    async def last_checkpoint(self) -> Checkpoint | None:
        row = await self._run(lambda: self._connection.execute(_LAST_CHECKPOINT).fetchone())
        return None if row is None else checkpoint_from_row(row)

    async def add_key(self, kid: str, public_pem: str, added: str) -> None:
        """Publish a signing key's public half (kept as it is when ``kid`` is known)."""
        await self._run(
            self._connection.execute,
            "INSERT INTO audit_keys (kid, public_key, added) VALUES (?,?,?) "
            "ON CONFLICT (kid) DO NOTHING",
            (kid, public_pem, added),
        )

    async def public_keys(self) -> list[tuple[str, str]]:
        """``(kid, PEM)`` of every key that signed (or may sign) checkpoints, oldest first."""
        rows = await self._run(lambda: self._connection.execute(_KEYS).fetchall())
        return [(str(row[0]), str(row[1])) for row in rows]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._run(self._connection.close)
        self._thread.shutdown()


def _checkpoint_row(checkpoint: Checkpoint) -> tuple[Any, ...]:
    c = checkpoint
    return (c.size, c.root_hash, c.time, c.kid, c.signature)


class PostgresAuditStorage:
    def __init__(self, dsn: str, pool: Any) -> None:
        self.dsn = dsn
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 1, max_size: int = 4) -> PostgresAuditStorage:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
        try:
            async with pool.acquire() as connection, connection.transaction():
                # CREATE TABLE IF NOT EXISTS races itself across processes: the lock orders them.
                await connection.execute("SELECT pg_advisory_xact_lock($1)", _ADVISORY_KEY)
                await connection.execute(_SCHEMA.format(blob="BYTEA") + _POSTGRES_GUARDS)
        except BaseException:
            await pool.close()
            raise
        return cls(dsn, pool)

    async def append(self, build: BuildRecords) -> Sequence[AuditRecord]:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _ADVISORY_KEY)
            records = build(_head(await connection.fetchrow(_HEAD)))
            await connection.executemany(
                f"INSERT INTO audit_records ({_COLUMNS}) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                [_row(record) for record in records],
            )
        return records

    async def head(self) -> ChainHead:
        return _head(await self._pool.fetchrow(_HEAD))

    async def records(self, start: int = 0, stop: int | None = None) -> AsyncIterator[AuditRecord]:
        upper = _NO_END if stop is None else stop
        while True:
            page = await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM audit_records WHERE seq >= $1 AND seq < $2 "
                "ORDER BY seq LIMIT $3",
                start,
                upper,
                PAGE,
            )
            for row in page:
                yield record_from_row(row)
            if len(page) < PAGE:
                return
            start = page[-1][0] + 1

    async def leaf_hashes(self, start: int, stop: int) -> list[bytes]:
        rows = await self._pool.fetch(
            "SELECT hash FROM audit_records WHERE seq >= $1 AND seq < $2 ORDER BY seq",
            start,
            stop,
        )
        return [bytes(row[0]) for row in rows]

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        await self._pool.execute(
            "INSERT INTO audit_checkpoints (size, root_hash, time, kid, signature) "
            "VALUES ($1,$2,$3,$4,$5) ON CONFLICT (size) DO NOTHING",
            *_checkpoint_row(checkpoint),
        )

    async def checkpoints(self) -> list[Checkpoint]:
        return [checkpoint_from_row(row) for row in await self._pool.fetch(_CHECKPOINTS)]

    async def last_checkpoint(self) -> Checkpoint | None:
        row = await self._pool.fetchrow(_LAST_CHECKPOINT)
        return None if row is None else checkpoint_from_row(row)

    async def add_key(self, kid: str, public_pem: str, added: str) -> None:
        """Publish a signing key's public half (kept as it is when ``kid`` is known)."""
        await self._pool.execute(
            "INSERT INTO audit_keys (kid, public_key, added) VALUES ($1,$2,$3) "
            "ON CONFLICT (kid) DO NOTHING",
            kid,
            public_pem,
            added,
        )

    async def public_keys(self) -> list[tuple[str, str]]:
        """``(kid, PEM)`` of every key that signed (or may sign) checkpoints, oldest first."""
        return [(str(row[0]), str(row[1])) for row in await self._pool.fetch(_KEYS)]

    async def close(self) -> None:
        await self._pool.close()
