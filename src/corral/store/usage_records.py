"""Usage records: one row per completed inference request, and sums over them.

The gateway's usage extension appends records in batches (never on the request path) and the
API server answers ``GET /corral/v1/usage`` from :meth:`summarize`. Two backends, one
behaviour:

- PostgreSQL (the store's database when the store is PostgreSQL), shared by every gateway
  process of a deployment: a batch is one ``INSERT ... SELECT FROM unnest(...)`` round trip.
- SQLite, a file in the state dir: a batch is one transaction, run on a worker thread so the
  event loop never waits for the disk; so are the sums.

``open_usage_records(url)`` picks one from ``postgresql://…`` or ``sqlite:///…``; ``name``
prefixes the table. Times are Unix seconds (UTC).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import asyncpg

from corral.store.counter_backends import check_table_name, open_sqlite_file

GroupBy = Literal["team", "key", "model", "endpoint"]
GROUPINGS: tuple[GroupBy, ...] = ("team", "key", "model", "endpoint")

_GROUP_SQL: dict[str, str] = {
    # Who: a key when the caller used one, else the principal (admin, workload, user).
    "team": "coalesce(team, '-')",
    "key": "coalesce(api_key, principal_kind || ':' || principal_id, '-')",
    # The model that answered (what the upstream reported), else the name the client sent.
    "model": "coalesce(served_model, request_model)",
    "endpoint": "namespace || '/' || endpoint",
}


class UsageRecord(NamedTuple):
    """One completed inference request. Field order is the table's: a record is its row.

    A named tuple rather than a frozen dataclass: the gateway builds one per request, and a
    tuple builds in a third of the time and goes to the database as it is.
    """

    at: float
    """When it ended, Unix seconds."""
    namespace: str
    endpoint: str
    request_model: str
    served_model: str | None
    principal_kind: str | None
    principal_id: str | None
    team: str | None
    api_key: str | None
    """``namespace/name`` of the ApiKey the caller presented, if any."""
    input_tokens: int
    output_tokens: int
    exact: bool
    """The upstream reported the tokens (False: counted or estimated)."""
    cost_usd: float | None
    status: int | None
    stream: bool


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Sums for one value of the grouping."""

    key: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    """None when no request of the group had a price."""

    def to_json(self) -> dict[str, object]:
        return {
            "key": self.key,
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
        }


_COLUMNS = UsageRecord._fields
"""The table's columns, in the order of a record's fields (its row)."""


def _group_sql(by: str) -> str:
    try:
        return _GROUP_SQL[by]
    except KeyError:
        raise ValueError(
            f"cannot group usage by {by!r}: use one of {', '.join(GROUPINGS)}"
        ) from None


async def open_usage_records(
    url: str, *, name: str = "corral_usage"
) -> PostgresUsageRecords | SqliteUsageRecords:
    """The usage table ``url`` names; ValueError for a URL it cannot use."""
    scheme = url.split("://", 1)[0].lower() if isinstance(url, str) and "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        return await PostgresUsageRecords.open(url, name=name)
    if scheme == "sqlite":
        path = url.split("://", 1)[1]
        if not path.startswith("/") or len(path) < 2:
            raise ValueError(f"usage URL {url!r}: write sqlite:///relative.db or sqlite:////abs.db")
        return SqliteUsageRecords(path[1:], name=name)
    raise ValueError(f"usage URL {url!r}: use postgresql://user@host/db or sqlite:///path.db")


class SqliteUsageRecords:
    """One file; writes and sums run on a worker thread, one at a time."""

    def __init__(self, path: str, *, name: str = "corral_usage") -> None:
        self._table = check_table_name(name, "usage table")
        self._lock = threading.Lock()
        self._db = open_sqlite_file(path, synchronous="NORMAL")
        self._db.executescript(
            f"CREATE TABLE IF NOT EXISTS {self._table} (at REAL NOT NULL, namespace TEXT NOT NULL,"
            " endpoint TEXT NOT NULL, request_model TEXT NOT NULL, served_model TEXT,"
            " principal_kind TEXT, principal_id TEXT, team TEXT, api_key TEXT,"
            " input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,"
            " exact INTEGER NOT NULL, cost_usd REAL, status INTEGER, stream INTEGER NOT NULL);"
            f"CREATE INDEX IF NOT EXISTS {self._table}_by_time ON {self._table} (at);"
        )
        placeholders = ", ".join("?" for _ in _COLUMNS)
        self._insert = f"INSERT INTO {self._table} ({', '.join(_COLUMNS)}) VALUES ({placeholders})"

    async def append(self, records: Sequence[UsageRecord]) -> None:
        if records:
            await asyncio.to_thread(self._append, records)

    def _append(self, rows: Sequence[tuple[object, ...]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(self._insert, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    async def summarize(self, by: str, since: float, until: float) -> list[UsageRow]:
        """Sums per value of ``by`` over records with ``since <= at < until``, most tokens
        first."""
        query = (
            f"SELECT {_group_sql(by)} AS k, count(*), sum(input_tokens), sum(output_tokens),"
            f" sum(cost_usd) FROM {self._table} WHERE at >= ? AND at < ?"
            " GROUP BY k ORDER BY sum(input_tokens) + sum(output_tokens) DESC, k"
        )
        rows = await asyncio.to_thread(self._query, query, (since, until))
        return [UsageRow(str(k), n, int(i), int(o), c) for k, n, i, o, c in rows]

    def _query(self, query: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(query, args).fetchall()

    async def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresUsageRecords:
    """The usage table in PostgreSQL (a small asyncpg pool per process)."""

    def __init__(self, pool: asyncpg.Pool, name: str) -> None:
        self._pool = pool
        self._table = name
        types = (
            "float8",
            "text",
            "text",
            "text",
            "text",
            "text",
            "text",
            "text",
            "text",
            "int8",
            "int8",
            "bool",
            "float8",
            "int4",
            "bool",
        )
        arrays = ", ".join(f"${i + 1}::{kind}[]" for i, kind in enumerate(types))
        self._insert = f"INSERT INTO {name} ({', '.join(_COLUMNS)}) SELECT * FROM unnest({arrays})"

    @classmethod
    async def open(
        cls, url: str, *, name: str = "corral_usage", pool_size: int = 2
    ) -> PostgresUsageRecords:
        name = check_table_name(name, "usage table")
        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)
        try:
            async with pool.acquire() as conn, conn.transaction():
                # Two processes creating the table at once would race on the catalog.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", name)
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} (at double precision NOT NULL,"
                    " namespace text NOT NULL, endpoint text NOT NULL, request_model text NOT NULL,"
                    " served_model text, principal_kind text, principal_id text, team text,"
                    " api_key text, input_tokens bigint NOT NULL, output_tokens bigint NOT NULL,"
                    " exact boolean NOT NULL, cost_usd double precision, status integer,"
                    " stream boolean NOT NULL);"
                    f"CREATE INDEX IF NOT EXISTS {name}_by_time ON {name} (at);"
                )
        except BaseException:
            await pool.close()
            raise
        return cls(pool, name)

    async def append(self, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        columns = [list(column) for column in zip(*records, strict=True)]
        async with self._pool.acquire() as conn:
            await conn.execute(self._insert, *columns)

    async def summarize(self, by: str, since: float, until: float) -> list[UsageRow]:
        """Sums per value of ``by`` over records with ``since <= at < until``, most tokens
        first."""
        query = (
            f"SELECT {_group_sql(by)} AS k, count(*) AS n, sum(input_tokens) AS i,"
            f" sum(output_tokens) AS o, sum(cost_usd) AS c FROM {self._table}"
            " WHERE at >= $1 AND at < $2"
            " GROUP BY k ORDER BY sum(input_tokens) + sum(output_tokens) DESC, k"
        )
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query, since, until)
        return [
            UsageRow(str(row["k"]), row["n"], int(row["i"]), int(row["o"]), row["c"])
            for row in rows
        ]

    async def close(self) -> None:
        await self._pool.close()
