"""Rate-limit counters in a database: the backends behind the gateway's RateLimits.

Two kinds of counter, both shared by every gateway process that opens the same URL:

- window counters, one integer per (limit key, minute number): requests or tokens counted in
  that minute; the admission test reads the current and the previous minute (the sliding
  window of ``corral.metering.ratelimits``);
- concurrency leases, one row per (limit key, request in flight) with an expiry the owning
  process renews; expired leases are dropped before counting, so a killed process frees its
  slots after the lease TTL.

``admit`` checks every limit of one request and counts it under all of them, or none, in one
atomic operation and one round trip:

- PostgreSQL: a server-side function locks one row per limit key (in key order, so two
  admissions never deadlock), tests every limit, then adds. Exact across processes.
- Redis: one Lua script, atomic on the server (a single Redis, not Cluster). Exact.
- SQLite: one ``BEGIN IMMEDIATE`` transaction on a file in the state dir (exact also for
  several processes sharing the file).

``finish`` (one round trip) frees a request's slots and corrects its token charge;
``renew`` extends the leases of requests still running; ``sweep`` drops old windows and
expired leases. Arguments are plain tuples so this module stays on ``corral.api`` alone:
a check is ``(key, windowed, limit, amount)``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import asyncpg
import redis.asyncio as aioredis

if TYPE_CHECKING:
    from corral.store.owned_counters import OwnedRateLimitCounters

from corral.store.counter_backends import (
    CounterFileLock,
    check_table_name,
    counter_backend,
    immediate_transaction,
    open_sqlite_file,
)

CheckArgs = tuple[str, bool, int, int]
"""(counter key, windowed (requests/tokens) or not (concurrency), limit, amount)."""
Correction = tuple[str, int, int]
"""(counter key, minute number, tokens to add; negative gives back)."""
EPSILON = 1e-9
WINDOW_KEEP_S = 180
"""Redis window counters expire after this (the admission test reads two minutes back)."""


class Answer(NamedTuple):
    """``used`` per check after admission (sliding count or in flight); on a refusal the index
    of the check that did not fit and its current/previous counts (in flight, 0)."""

    admitted: bool
    used: tuple[float, ...]
    failed: int
    current: int
    previous: int


async def open_ratelimit_counters(
    url: str, *, name: str = "corral_ratelimit", owned: bool = False
) -> (
    PostgresRateLimitCounters
    | RedisRateLimitCounters
    | SqliteRateLimitCounters
    | OwnedRateLimitCounters
):
    """The counter backend ``url`` names; ValueError for a URL it cannot use.

    ``owned`` applies to SQLite: this process alone uses the file and keeps the counters in
    memory (``corral.store.owned_counters``) instead of a transaction per admission."""
    backend, where = counter_backend(url, "rate-limit counter")
    if backend == "postgres":
        return await PostgresRateLimitCounters.open(where, name=name)
    if backend == "redis":
        return await RedisRateLimitCounters.open(where, name=name)
    if owned:
        from corral.store.owned_counters import OwnedRateLimitCounters

        return OwnedRateLimitCounters(where, name=name)
    return SqliteRateLimitCounters(where, name=name)


class SqliteRateLimitCounters:
    """One file, one connection; each call is one short synchronous transaction.

    Processes sharing the file each hold a shared lock on it, so none can own it meanwhile
    (``corral.store.owned_counters.OwnedRateLimitCounters``)."""

    def __init__(self, path: str, *, name: str = "corral_ratelimit") -> None:
        name = check_table_name(name, "rate-limit counter")
        self._windows, self._leases = f"{name}_windows", f"{name}_leases"
        self._lock = CounterFileLock(path, exclusive=False, what="rate-limit counters")
        # Counters are about the last two minutes: losing the last commits to a power cut
        # costs at most a minute of leniency, so no fsync per admission.
        self._db = open_sqlite_file(path, synchronous="OFF")
        self._db.executescript(
            f"CREATE TABLE IF NOT EXISTS {self._windows} (key TEXT NOT NULL, win INTEGER NOT NULL,"
            " used INTEGER NOT NULL, PRIMARY KEY (key, win)) WITHOUT ROWID;"
            f"CREATE TABLE IF NOT EXISTS {self._leases} (key TEXT NOT NULL, id TEXT NOT NULL,"
            " expires_at REAL NOT NULL, PRIMARY KEY (key, id)) WITHOUT ROWID;"
        )

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return immediate_transaction(self._db)

    async def admit(
        self,
        checks: Sequence[CheckArgs],
        *,
        now: float,
        window: int,
        weight: float,
        lease_id: str,
        lease_expires: float,
    ) -> Answer:
        used: list[float] = []
        with self._transaction() as db:
            for index, (key, windowed, limit, amount) in enumerate(checks):
                if windowed:
                    current, previous = 0, 0
                    for win, count in db.execute(
                        f"SELECT win, used FROM {self._windows} WHERE key = ? AND win IN (?, ?)",
                        (key, window, window - 1),
                    ):
                        if win == window:
                            current = count
                        else:
                            previous = count
                    after = current + previous * weight + amount
                    if after > limit + EPSILON:
                        return Answer(False, (), index, current, previous)
                    used.append(after)
                else:
                    db.execute(
                        f"DELETE FROM {self._leases} WHERE key = ? AND expires_at < ?", (key, now)
                    )
                    (in_flight,) = db.execute(
                        f"SELECT count(*) FROM {self._leases} WHERE key = ?", (key,)
                    ).fetchone()
                    if in_flight + 1 > limit:
                        return Answer(False, (), index, in_flight, 0)
                    used.append(in_flight + 1)
            for key, windowed, _limit, amount in checks:
                if windowed:
                    db.execute(
                        f"INSERT INTO {self._windows} (key, win, used) VALUES (?, ?, ?)"
                        " ON CONFLICT (key, win) DO UPDATE SET used = used + excluded.used",
                        (key, window, amount),
                    )
                else:
                    db.execute(
                        f"INSERT OR REPLACE INTO {self._leases} VALUES (?, ?, ?)",
                        (key, lease_id, lease_expires),
                    )
        return Answer(True, tuple(used), -1, 0, 0)

    async def finish(
        self, lease_id: str, slot_keys: Sequence[str], corrections: Sequence[Correction]
    ) -> None:
        with self._transaction() as db:
            db.executemany(
                f"DELETE FROM {self._leases} WHERE key = ? AND id = ?",
                [(key, lease_id) for key in slot_keys],
            )
            db.executemany(
                f"UPDATE {self._windows} SET used = max(used + ?, 0) WHERE key = ? AND win = ?",
                [(delta, key, win) for key, win, delta in sorted(corrections)],
            )

    async def renew(self, leases: Sequence[tuple[str, str]], expires_at: float) -> None:
        with self._transaction() as db:
            db.executemany(
                f"UPDATE {self._leases} SET expires_at = ? WHERE key = ? AND id = ?",
                [(expires_at, key, lease) for key, lease in sorted(leases)],
            )

    async def sweep(self, now: float, window: int) -> None:
        with self._transaction() as db:
            db.execute(f"DELETE FROM {self._windows} WHERE win < ?", (window - 1,))
            db.execute(f"DELETE FROM {self._leases} WHERE expires_at < ?", (now,))

    async def close(self) -> None:
        self._db.close()
        self._lock.release()


def _postgres_schema(name: str) -> str:
    # Admission is a server-side function: one round trip, and the limit rows stay locked only
    # while it runs, never across network waits.
    lim, win, lease = f"{name}_limits", f"{name}_windows", f"{name}_leases"
    return f"""
CREATE TABLE IF NOT EXISTS {lim} (key text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS {win} (key text NOT NULL, win bigint NOT NULL,
    used bigint NOT NULL, PRIMARY KEY (key, win));
CREATE TABLE IF NOT EXISTS {lease} (key text NOT NULL, id text NOT NULL,
    expires_at double precision NOT NULL, PRIMARY KEY (key, id));

CREATE OR REPLACE FUNCTION {name}_admit(p_now double precision, p_win bigint,
    p_weight double precision, p_keys text[], p_windowed boolean[], p_limits bigint[],
    p_amounts bigint[], p_lease text, p_expires double precision)
RETURNS TABLE (ok boolean, idx int, cur bigint, prev bigint, used double precision[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    locked int;
    c bigint;
    p bigint;
    after double precision[] := '{{}}';
BEGIN
    PERFORM 1 FROM {lim} WHERE key = ANY(p_keys) ORDER BY key FOR UPDATE;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked < cardinality(p_keys) THEN
        INSERT INTO {lim} (key) SELECT k FROM unnest(p_keys) AS k ORDER BY k
            ON CONFLICT DO NOTHING;
        PERFORM 1 FROM {lim} WHERE key = ANY(p_keys) ORDER BY key FOR UPDATE;
    END IF;
    FOR i IN 1 .. cardinality(p_keys) LOOP
        IF p_windowed[i] THEN
            SELECT coalesce(sum(w.used) FILTER (WHERE w.win = p_win), 0),
                   coalesce(sum(w.used) FILTER (WHERE w.win = p_win - 1), 0)
                INTO c, p FROM {win} AS w
                WHERE w.key = p_keys[i] AND w.win IN (p_win, p_win - 1);
            IF c + p * p_weight + p_amounts[i] > p_limits[i] + {EPSILON} THEN
                RETURN QUERY SELECT false, i - 1, c, p, NULL::double precision[];
                RETURN;
            END IF;
            after := after || (c + p * p_weight + p_amounts[i]);
        ELSE
            DELETE FROM {lease} AS l WHERE l.key = p_keys[i] AND l.expires_at < p_now;
            SELECT count(*) INTO c FROM {lease} AS l WHERE l.key = p_keys[i];
            IF c + 1 > p_limits[i] THEN
                RETURN QUERY SELECT false, i - 1, c, 0::bigint, NULL::double precision[];
                RETURN;
            END IF;
            after := after || (c + 1)::double precision;
        END IF;
    END LOOP;
    INSERT INTO {win} AS w (key, win, used)
        SELECT x.k, p_win, x.a FROM unnest(p_keys, p_windowed, p_amounts) AS x(k, wd, a)
        WHERE x.wd ORDER BY x.k
        ON CONFLICT (key, win) DO UPDATE SET used = w.used + excluded.used;
    INSERT INTO {lease} (key, id, expires_at)
        SELECT x.k, p_lease, p_expires FROM unnest(p_keys, p_windowed) AS x(k, wd)
        WHERE NOT x.wd
        ON CONFLICT (key, id) DO UPDATE SET expires_at = excluded.expires_at;
    RETURN QUERY SELECT true, -1, 0::bigint, 0::bigint, after;
END $$;
"""


class PostgresRateLimitCounters:
    """Counters shared by every process on one database (a small asyncpg pool per process)."""

    def __init__(self, pool: asyncpg.Pool, name: str) -> None:
        self._pool = pool
        win, lease = f"{name}_windows", f"{name}_leases"
        self._admit = f"SELECT ok, idx, cur, prev, used FROM {name}_admit($1, $2, $3, $4, $5,"
        self._admit += " $6, $7, $8, $9)"
        # One statement: the lease delete runs as a data-modifying CTE beside the update.
        self._finish = (
            f"WITH gone AS (DELETE FROM {lease} WHERE key = ANY($2::text[]) AND id = $1)"
            f" UPDATE {win} AS w SET used = greatest(w.used + d.delta, 0)"
            " FROM unnest($3::text[], $4::bigint[], $5::bigint[]) AS d(key, win, delta)"
            " WHERE w.key = d.key AND w.win = d.win"
        )
        self._renew = (
            f"UPDATE {lease} AS l SET expires_at = $3"
            " FROM unnest($1::text[], $2::text[]) AS r(key, id)"
            " WHERE l.key = r.key AND l.id = r.id"
        )
        self._sweep_windows = f"DELETE FROM {win} WHERE win < $1"
        self._sweep_leases = f"DELETE FROM {lease} WHERE expires_at < $1"

    @classmethod
    async def open(
        cls, url: str, *, name: str = "corral_ratelimit", pool_size: int = 3
    ) -> PostgresRateLimitCounters:
        name = check_table_name(name, "rate-limit counter")
        # Counters are about the last two minutes: no need to wait for the WAL flush.
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=pool_size, server_settings={"synchronous_commit": "off"}
        )
        try:
            async with pool.acquire() as conn, conn.transaction():
                # Two processes creating the schema at once would race on the catalog.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", name)
                await conn.execute(_postgres_schema(name))
        except BaseException:
            await pool.close()
            raise
        return cls(pool, name)

    async def admit(
        self,
        checks: Sequence[CheckArgs],
        *,
        now: float,
        window: int,
        weight: float,
        lease_id: str,
        lease_expires: float,
    ) -> Answer:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                self._admit,
                now,
                window,
                weight,
                [check[0] for check in checks],
                [check[1] for check in checks],
                [check[2] for check in checks],
                [check[3] for check in checks],
                lease_id,
                lease_expires,
            )
        assert row is not None
        if row["ok"]:
            return Answer(True, tuple(row["used"]), -1, 0, 0)
        return Answer(False, (), row["idx"], row["cur"], row["prev"])

    async def finish(
        self, lease_id: str, slot_keys: Sequence[str], corrections: Sequence[Correction]
    ) -> None:
        ordered = sorted(corrections)  # key order: two finishes never deadlock
        async with self._pool.acquire() as conn:
            await conn.execute(
                self._finish,
                lease_id,
                list(slot_keys),
                [c[0] for c in ordered],
                [c[1] for c in ordered],
                [c[2] for c in ordered],
            )

    async def renew(self, leases: Sequence[tuple[str, str]], expires_at: float) -> None:
        ordered = sorted(leases)
        async with self._pool.acquire() as conn:
            await conn.execute(
                self._renew, [k for k, _ in ordered], [i for _, i in ordered], expires_at
            )

    async def sweep(self, now: float, window: int) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(self._sweep_windows, window - 1)
            await conn.execute(self._sweep_leases, now)

    async def close(self) -> None:
        await self._pool.close()


# KEYS: per check two keys (window: current, previous; concurrency: the lease set twice)
# ARGV: now, weight, n, lease id, lease expiry, window ttl, then per check windowed, limit, amount
_ADMIT = """
local weight, n = tonumber(ARGV[2]), tonumber(ARGV[3])
local used = {}
for i = 1, n do
  local base = 6 + 3 * (i - 1)
  local limit, amount = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  if ARGV[base + 1] == '1' then
    local cur = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
    local prev = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
    local after = cur + prev * weight + amount
    if after > limit + 1e-9 then return {0, i - 1, cur, prev} end
    used[i] = tostring(after)
  else
    redis.call('ZREMRANGEBYSCORE', KEYS[2 * i - 1], '-inf', '(' .. ARGV[1])
    local in_flight = redis.call('ZCARD', KEYS[2 * i - 1])
    if in_flight + 1 > limit then return {0, i - 1, in_flight, 0} end
    used[i] = tostring(in_flight + 1)
  end
end
for i = 1, n do
  local base = 6 + 3 * (i - 1)
  if ARGV[base + 1] == '1' then
    redis.call('INCRBY', KEYS[2 * i - 1], ARGV[base + 3])
    redis.call('EXPIRE', KEYS[2 * i - 1], ARGV[6])
  else
    redis.call('ZADD', KEYS[2 * i - 1], ARGV[5], ARGV[4])
    redis.call('EXPIRE', KEYS[2 * i - 1], ARGV[6])
  end
end
local out = {1}
for i = 1, n do out[#out + 1] = used[i] end
return out
"""

# KEYS: lease sets..., then window counters...; ARGV: lease id, number of lease sets, deltas...
_FINISH = """
local sets = tonumber(ARGV[2])
for i = 1, sets do redis.call('ZREM', KEYS[i], ARGV[1]) end
for i = sets + 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local left = redis.call('INCRBY', KEYS[i], ARGV[2 + i - sets])
    if left < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
  end
end
return 1
"""


class RedisRateLimitCounters:
    """Counters in one Redis: admission and finish are Lua scripts, atomic on the server."""

    def __init__(self, client: aioredis.Redis, name: str) -> None:
        self._client = client
        self._window_prefix = f"{name}:w:"
        self._lease_prefix = f"{name}:s:"
        self._admit = client.register_script(_ADMIT)
        self._finish = client.register_script(_FINISH)

    @classmethod
    async def open(
        cls, url: str, *, name: str = "corral_ratelimit", pool_size: int = 8
    ) -> RedisRateLimitCounters:
        # A blocking pool makes a burst of requests queue for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=pool_size, timeout=30)
        client = aioredis.Redis.from_pool(pool)
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        return cls(client, check_table_name(name, "rate-limit counter"))

    def _window_key(self, key: str, window: int) -> str:
        return f"{self._window_prefix}{key}:{window}"

    async def admit(
        self,
        checks: Sequence[CheckArgs],
        *,
        now: float,
        window: int,
        weight: float,
        lease_id: str,
        lease_expires: float,
    ) -> Answer:
        keys: list[str] = []
        args: list[str | int | float] = [
            repr(now),
            repr(weight),
            len(checks),
            lease_id,
            repr(lease_expires),
            WINDOW_KEEP_S,
        ]
        for key, windowed, limit, amount in checks:
            if windowed:
                keys += [self._window_key(key, window), self._window_key(key, window - 1)]
            else:
                keys += [self._lease_prefix + key] * 2
            args += [1 if windowed else 0, limit, amount]
        out = await self._admit(keys=keys, args=args)
        if int(out[0]) == 0:
            return Answer(False, (), int(out[1]), int(out[2]), int(out[3]))
        return Answer(True, tuple(float(value) for value in out[1:]), -1, 0, 0)

    async def finish(
        self, lease_id: str, slot_keys: Sequence[str], corrections: Sequence[Correction]
    ) -> None:
        keys = [self._lease_prefix + key for key in slot_keys]
        keys += [self._window_key(key, win) for key, win, _delta in corrections]
        args: list[str | int] = [lease_id, len(slot_keys)]
        args += [delta for _key, _win, delta in corrections]
        await self._finish(keys=keys, args=args)

    async def renew(self, leases: Sequence[tuple[str, str]], expires_at: float) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for key, lease in leases:
                pipe.zadd(self._lease_prefix + key, {lease: expires_at}, xx=True)
                pipe.expire(self._lease_prefix + key, WINDOW_KEEP_S)
            await pipe.execute()

    async def sweep(self, now: float, window: int) -> None:
        """Windows expire by themselves; expired leases are dropped when a limit is tested."""

    async def close(self) -> None:
        await self._client.aclose()
