"""Budget counters in a database: the backends behind ``corral.metering.BudgetLedger``.

Each counter is (spent, held) integers under a key the ledger chooses; a reservation records
its holds so settle, release and expiry can return them. Three backends, one behaviour:

- PostgreSQL, for many gateway processes: a server-side function (one round trip) locks the
  budget's counter rows in key order (``FOR UPDATE``), checks spent + held + amount <= limit
  for each and adds every hold, or none; settle locks the reservation row first, so of two
  settles one charges and the other sees "settled". Key order everywhere and ``SKIP LOCKED``
  in the sweep keep it deadlock-free.
- Redis, for many processes without a database round trip each: Lua scripts run atomically on
  the server. A single Redis, not Cluster: the scripts touch keys recorded in a reservation.
- SQLite, for one process (``BEGIN IMMEDIATE`` also serialises other processes on one file).

``open_budget_counters(url)`` picks one from ``postgresql://…``, ``redis://…`` or
``sqlite:///…``; ``name`` prefixes its tables or keys. Finished reservations are kept for
``FINISHED_RETENTION_S`` so a late duplicate settle still finds them, then swept away.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping, Sequence

import asyncpg
import orjson
import redis.asyncio as aioredis

from corral.store.counter_backends import (
    CounterFileLock,
    check_table_name,
    counter_backend,
    immediate_transaction,
    open_sqlite_file,
)
from corral.store.owned_counters import OwnedBudgetCounters

Hold = tuple[str, int, int | None]
State = tuple[str, int, int]
FINISHED_RETENTION_S = 86_400
EXPIRE_BATCH = 1000


async def open_budget_counters(
    url: str, *, name: str = "corral_budget", durable: bool = True, owned: bool = False
) -> PostgresBudgetCounters | RedisBudgetCounters | SqliteBudgetCounters | OwnedBudgetCounters:
    """The counter backend ``url`` names; ValueError for a URL it cannot use.

    ``durable`` applies to PostgreSQL (see :meth:`PostgresBudgetCounters.open`); ``owned``
    to SQLite: this process alone uses the file and keeps the counters in memory
    (``corral.store.owned_counters``) instead of a transaction per change."""
    backend, where = counter_backend(url, "budget")
    if backend == "postgres":
        return await PostgresBudgetCounters.open(where, name=name, durable=durable)
    if backend == "redis":
        return await RedisBudgetCounters.open(where, name=name)
    if owned:
        return OwnedBudgetCounters(where, name=name)
    return SqliteBudgetCounters(where, name=name)


class SqliteBudgetCounters:
    """One file, one connection; each call is a short synchronous transaction (tens of µs).

    Several processes may share the file (``BEGIN IMMEDIATE`` serialises them); each holds a
    shared lock on it so that no process can own it meanwhile (``OwnedBudgetCounters``).
    ``lock=False`` is for a reader beside the owner (a process without the gateway role)."""

    def __init__(self, path: str, *, name: str = "corral_budget", lock: bool = True) -> None:
        name = check_table_name(name)
        self._counters, self._reservations = f"{name}_counters", f"{name}_reservations"
        self._lock = (
            CounterFileLock(path, exclusive=False, what="budget counters") if lock else None
        )
        self._db = open_sqlite_file(path, synchronous="NORMAL")
        self._db.executescript(
            f"CREATE TABLE IF NOT EXISTS {self._counters} (key TEXT PRIMARY KEY,"
            " spent INTEGER NOT NULL DEFAULT 0, held INTEGER NOT NULL DEFAULT 0);"
            f"CREATE TABLE IF NOT EXISTS {self._reservations} (id TEXT PRIMARY KEY,"
            " state TEXT NOT NULL, expires_at REAL NOT NULL, holds TEXT NOT NULL);"
            f"CREATE INDEX IF NOT EXISTS {name}_by_expiry"
            f" ON {self._reservations} (state, expires_at);"
        )

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return immediate_transaction(self._db)

    async def reserve(
        self, reservation_id: str, holds: Sequence[Hold], expires_at: float
    ) -> tuple[bool, list[State]]:
        with self._transaction() as db:
            states = []
            for key, amount, limit in sorted(holds):
                db.execute(f"INSERT OR IGNORE INTO {self._counters} (key) VALUES (?)", (key,))
                spent, held = db.execute(
                    f"SELECT spent, held FROM {self._counters} WHERE key = ?", (key,)
                ).fetchone()
                if limit is not None and spent + held + amount > limit:
                    db.execute("ROLLBACK")
                    return False, [(key, spent, held)]
                states.append((key, spent, held + amount))
            db.executemany(
                f"UPDATE {self._counters} SET held = held + ? WHERE key = ?",
                [(amount, key) for key, amount, _limit in holds],
            )
            db.execute(
                f"INSERT INTO {self._reservations} VALUES (?, 'held', ?, ?)",
                (reservation_id, expires_at, orjson.dumps([h[:2] for h in holds]).decode()),
            )
            return True, states

    async def settle(
        self, reservation_id: str, actual: Mapping[str, int]
    ) -> tuple[str, list[State]]:
        return self._finish(reservation_id, "settled", actual)

    async def release(self, reservation_id: str) -> str:
        return self._finish(reservation_id, "released", None)[0]

    def _finish(
        self, reservation_id: str, new_state: str, actual: Mapping[str, int] | None
    ) -> tuple[str, list[State]]:
        with self._transaction() as db:
            row = db.execute(
                f"SELECT state, holds FROM {self._reservations} WHERE id = ?", (reservation_id,)
            ).fetchone()
            if row is None or row[0] not in ("held", "expired"):
                return ("unknown" if row is None else row[0]), []
            state, holds = row[0], dict(orjson.loads(row[1]))
            if actual is None and state == "expired":
                return state, []
            states = []
            for key in sorted(holds):
                back = holds[key] if state == "held" else 0
                charge = 0 if actual is None else actual.get(key, 0)
                states.append(
                    db.execute(
                        f"UPDATE {self._counters} SET held = held - ?, spent = spent + ?"
                        " WHERE key = ? RETURNING key, spent, held",
                        (back, charge, key),
                    ).fetchone()
                )
            db.execute(
                f"UPDATE {self._reservations} SET state = ? WHERE id = ?",
                (new_state, reservation_id),
            )
            return state, states

    async def expire(self, now: float) -> int:
        with self._transaction() as db:
            gone = db.execute(
                f"UPDATE {self._reservations} SET state = 'expired'"
                " WHERE state = 'held' AND expires_at < ? RETURNING holds",
                (now,),
            ).fetchall()
            back: dict[str, int] = {}
            for (holds,) in gone:
                for key, amount in orjson.loads(holds):
                    back[key] = back.get(key, 0) + amount
            db.executemany(
                f"UPDATE {self._counters} SET held = held - ? WHERE key = ?",
                [(amount, key) for key, amount in sorted(back.items())],
            )
            db.execute(
                f"DELETE FROM {self._reservations} WHERE state != 'held' AND expires_at < ?",
                (now - FINISHED_RETENTION_S,),
            )
            return len(gone)

    async def counters(self, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        found = {key: (0, 0) for key in keys}
        for key in keys:
            row = self._db.execute(
                f"SELECT spent, held FROM {self._counters} WHERE key = ?", (key,)
            ).fetchone()
            if row is not None:
                found[key] = (row[0], row[1])
        return found

    async def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.release()


def _postgres_schema(name: str) -> str:
    # Reserve and finish run as server-side functions: each is one round trip, so the counter
    # rows stay locked only while the function runs, never across network waits. Holds and
    # settles on one hot budget then serialise at the database's speed, not the network's.
    c, r = f"{name}_counters", f"{name}_reservations"
    return f"""
CREATE TABLE IF NOT EXISTS {c} (key text PRIMARY KEY,
    spent bigint NOT NULL DEFAULT 0, held bigint NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS {r} (id text PRIMARY KEY, state text NOT NULL,
    expires_at double precision NOT NULL, hold_keys text[] NOT NULL,
    hold_amounts bigint[] NOT NULL);
CREATE INDEX IF NOT EXISTS {name}_by_expiry ON {r} (state, expires_at);

CREATE OR REPLACE FUNCTION {name}_reserve(p_id text, p_keys text[], p_amounts bigint[],
    p_limits bigint[], p_expires double precision)
RETURNS TABLE (ok boolean, key text, spent bigint, held bigint) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    locked int;
    s bigint;
    h bigint;
BEGIN
    PERFORM 1 FROM {c} WHERE key = ANY(p_keys) ORDER BY key FOR UPDATE;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked < cardinality(p_keys) THEN
        INSERT INTO {c} (key) SELECT k FROM unnest(p_keys) AS k ORDER BY k
            ON CONFLICT DO NOTHING;
        PERFORM 1 FROM {c} WHERE key = ANY(p_keys) ORDER BY key FOR UPDATE;
    END IF;
    FOR i IN 1 .. cardinality(p_keys) LOOP
        SELECT x.spent, x.held INTO s, h FROM {c} AS x WHERE x.key = p_keys[i];
        IF p_limits[i] IS NOT NULL AND s + h + p_amounts[i] > p_limits[i] THEN
            RETURN QUERY SELECT false, p_keys[i], s, h;
            RETURN;
        END IF;
    END LOOP;
    INSERT INTO {r} (id, state, expires_at, hold_keys, hold_amounts)
        VALUES (p_id, 'held', p_expires, p_keys, p_amounts);
    RETURN QUERY WITH added AS (
        UPDATE {c} AS x SET held = x.held + a.amount
        FROM unnest(p_keys, p_amounts) AS a(key, amount) WHERE x.key = a.key
        RETURNING x.key, x.spent, x.held)
    SELECT true, added.key, added.spent, added.held FROM added ORDER BY added.key;
END $$;

CREATE OR REPLACE FUNCTION {name}_finish(p_id text, p_state text, p_keys text[],
    p_charges bigint[])
RETURNS TABLE (was text, key text, spent bigint, held bigint) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    found_state text;
    found_keys text[];
    found_amounts bigint[];
BEGIN
    SELECT x.state, x.hold_keys, x.hold_amounts INTO found_state, found_keys, found_amounts
        FROM {r} AS x WHERE x.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::text, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF found_state NOT IN ('held', 'expired')
            OR (p_state = 'released' AND found_state = 'expired') THEN
        RETURN QUERY SELECT found_state, NULL::text, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    PERFORM 1 FROM {c} WHERE key = ANY(found_keys) ORDER BY key FOR UPDATE;
    UPDATE {r} SET state = p_state WHERE id = p_id;
    RETURN QUERY WITH changed AS (
        UPDATE {c} AS x
        SET held = x.held - CASE WHEN found_state = 'held' THEN h.amount ELSE 0 END,
            spent = x.spent + coalesce(a.charge, 0)
        FROM unnest(found_keys, found_amounts) AS h(key, amount)
        LEFT JOIN unnest(p_keys, p_charges) AS a(key, charge) ON a.key = h.key
        WHERE x.key = h.key
        RETURNING x.key, x.spent, x.held)
    SELECT found_state, changed.key, changed.spent, changed.held FROM changed
    ORDER BY changed.key;
END $$;
"""


class PostgresBudgetCounters:
    """Counters shared by every process on one database (a small asyncpg pool per process)."""

    def __init__(self, pool: asyncpg.Pool, name: str) -> None:
        self._pool = pool
        c, r = f"{name}_counters", f"{name}_reservations"
        self._reserve = f"SELECT ok, key, spent, held FROM {name}_reserve($1, $2, $3, $4, $5)"
        self._finish_call = f"SELECT was, key, spent, held FROM {name}_finish($1, $2, $3, $4)"
        self._lock = f"SELECT 1 FROM {c} WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE"
        self._return_holds = (
            f"UPDATE {c} SET held = {c}.held - h.amount"
            f" FROM unnest($1::text[], $2::bigint[]) AS h(key, amount) WHERE {c}.key = h.key"
        )
        self._expire = (
            f"UPDATE {r} SET state = 'expired' WHERE id IN (SELECT id FROM {r}"
            " WHERE state = 'held' AND expires_at < $1 ORDER BY id"
            f" LIMIT {EXPIRE_BATCH} FOR UPDATE SKIP LOCKED) RETURNING hold_keys, hold_amounts"
        )
        self._forget = f"DELETE FROM {r} WHERE state <> 'held' AND expires_at < $1"
        self._read = f"SELECT key, spent, held FROM {c} WHERE key = ANY($1::text[])"

    @classmethod
    async def open(
        cls, url: str, *, name: str = "corral_budget", pool_size: int = 4, durable: bool = True
    ) -> PostgresBudgetCounters:
        """``durable=False`` commits without waiting for the WAL flush (``synchronous_commit
        off``, these connections only): a hot budget's holds serialise on its row lock until
        commit, so this multiplies their rate, at the price of losing the last moments of
        holds and charges if the database server itself crashes (never if a gateway does)."""
        name = check_table_name(name)
        settings = {} if durable else {"synchronous_commit": "off"}
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=pool_size, server_settings=settings
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

    async def reserve(
        self, reservation_id: str, holds: Sequence[Hold], expires_at: float
    ) -> tuple[bool, list[State]]:
        ordered = sorted(holds)
        keys = [key for key, _amount, _limit in ordered]
        amounts = [amount for _key, amount, _limit in ordered]
        limits = [limit for _key, _amount, limit in ordered]
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                self._reserve, reservation_id, keys, amounts, limits, expires_at
            )
        return rows[0]["ok"], [(row["key"], row["spent"], row["held"]) for row in rows]

    async def settle(
        self, reservation_id: str, actual: Mapping[str, int]
    ) -> tuple[str, list[State]]:
        return await self._finish(reservation_id, "settled", actual)

    async def release(self, reservation_id: str) -> str:
        return (await self._finish(reservation_id, "released", {}))[0]

    async def _finish(
        self, reservation_id: str, new_state: str, actual: Mapping[str, int]
    ) -> tuple[str, list[State]]:
        keys = sorted(actual)
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                self._finish_call, reservation_id, new_state, keys, [actual[k] for k in keys]
            )
        if rows[0]["key"] is None:
            return rows[0]["was"], []
        return rows[0]["was"], [(row["key"], row["spent"], row["held"]) for row in rows]

    async def expire(self, now: float) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            gone = await conn.fetch(self._expire, now)
            back: dict[str, int] = {}
            for row in gone:
                for key, amount in zip(row["hold_keys"], row["hold_amounts"], strict=True):
                    back[key] = back.get(key, 0) + amount
            if back:
                keys = sorted(back)
                await conn.execute(self._lock, keys)
                await conn.execute(self._return_holds, keys, [back[k] for k in keys])
            await conn.execute(self._forget, now - FINISHED_RETENTION_S)
            return len(gone)

    async def counters(self, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        found = {key: (0, 0) for key in keys}
        async with self._pool.acquire() as conn:
            for row in await conn.fetch(self._read, list(keys)):
                found[row["key"]] = (row["spent"], row["held"])
        return found

    async def close(self) -> None:
        await self._pool.close()


_RESERVE = """
local n = tonumber(ARGV[3])
local record, expiry = KEYS[n + 1], KEYS[n + 2]
if redis.call('EXISTS', record) == 1 then return redis.error_reply('reservation id in use') end
for i = 1, n do
  local limit = ARGV[3 + 2 * i]
  if limit ~= '' then
    local v = redis.call('HMGET', KEYS[i], 'spent', 'held')
    local spent, held = tonumber(v[1] or '0'), tonumber(v[2] or '0')
    if spent + held + tonumber(ARGV[2 + 2 * i]) > tonumber(limit) then
      return {0, i, spent, held}
    end
  end
end
local out = {1}
for i = 1, n do
  local held = redis.call('HINCRBY', KEYS[i], 'held', ARGV[2 + 2 * i])
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[i], 'spent') or '0')
  out[#out + 1] = held
  redis.call('HSET', record, 'h:' .. KEYS[i], ARGV[2 + 2 * i])
end
redis.call('HSET', record, 'state', 'held')
redis.call('ZADD', expiry, ARGV[2], ARGV[1])
return out
"""

# KEYS: record, expiry zset, counters...; ARGV: id, new state, retention, charges...
_FINISH = """
local record = KEYS[1]
local state = redis.call('HGET', record, 'state')
if not state then return {'unknown'} end
if state ~= 'held' and state ~= 'expired' then return {state} end
if ARGV[2] == 'released' and state == 'expired' then return {state} end
local out = {state}
for i = 3, #KEYS do
  if state == 'held' then
    local hold = redis.call('HGET', record, 'h:' .. KEYS[i])
    if hold then redis.call('HINCRBY', KEYS[i], 'held', -tonumber(hold)) end
  end
  out[#out + 1] = redis.call('HINCRBY', KEYS[i], 'spent', ARGV[1 + i])
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[i], 'held') or '0')
end
redis.call('HSET', record, 'state', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('EXPIRE', record, ARGV[3])
return out
"""

# KEYS: expiry zset; ARGV: now, record key prefix, retention, batch
_EXPIRE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[4])
for _, id in ipairs(ids) do
  local record = ARGV[2] .. id
  local fields = redis.call('HGETALL', record)
  for j = 1, #fields, 2 do
    if string.sub(fields[j], 1, 2) == 'h:' then
      redis.call('HINCRBY', string.sub(fields[j], 3), 'held', -tonumber(fields[j + 1]))
    end
  end
  redis.call('HSET', record, 'state', 'expired')
  redis.call('EXPIRE', record, ARGV[3])
  redis.call('ZREM', KEYS[1], id)
end
return #ids
"""


class RedisBudgetCounters:
    """Counters in one Redis: each operation is one Lua script, atomic on the server."""

    def __init__(self, client: aioredis.Redis, name: str) -> None:
        self._client = client
        self._counter_prefix = f"{name}:c:"
        self._record_prefix = f"{name}:r:"
        self._expiry = f"{name}:expiry"
        self._reserve = client.register_script(_RESERVE)
        self._finish_script = client.register_script(_FINISH)
        self._expire = client.register_script(_EXPIRE)

    @classmethod
    async def open(
        cls, url: str, *, name: str = "corral_budget", pool_size: int = 8
    ) -> RedisBudgetCounters:
        # A blocking pool makes a burst of requests queue for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=pool_size, timeout=30)
        client = aioredis.Redis.from_pool(pool)
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        return cls(client, check_table_name(name))

    async def reserve(
        self, reservation_id: str, holds: Sequence[Hold], expires_at: float
    ) -> tuple[bool, list[State]]:
        ordered = sorted(holds)
        keys = [self._counter_prefix + key for key, _amount, _limit in ordered]
        args: list[str | int | float] = [reservation_id, repr(expires_at), len(ordered)]
        for _key, amount, limit in ordered:
            args += [amount, "" if limit is None else limit]
        record = self._record_prefix + reservation_id
        out = await self._reserve(keys=[*keys, record, self._expiry], args=args)
        if out[0] == 0:
            return False, [(ordered[int(out[1]) - 1][0], int(out[2]), int(out[3]))]
        return True, [
            (key, int(out[1 + 2 * i]), int(out[2 + 2 * i]))
            for i, (key, _amount, _limit) in enumerate(ordered)
        ]

    async def settle(
        self, reservation_id: str, actual: Mapping[str, int]
    ) -> tuple[str, list[State]]:
        return await self._finish(reservation_id, "settled", actual)

    async def release(self, reservation_id: str) -> str:
        record = self._record_prefix + reservation_id
        fields = await self._client.hkeys(record)
        names = [f.decode() if isinstance(f, bytes) else f for f in fields]
        start = len("h:" + self._counter_prefix)
        held = sorted(field[start:] for field in names if field.startswith("h:"))
        return (await self._finish(reservation_id, "released", dict.fromkeys(held, 0)))[0]

    async def _finish(
        self, reservation_id: str, new_state: str, actual: Mapping[str, int]
    ) -> tuple[str, list[State]]:
        ordered = sorted(actual)
        keys = [self._record_prefix + reservation_id, self._expiry]
        keys += [self._counter_prefix + key for key in ordered]
        args: list[str | int] = [reservation_id, new_state, FINISHED_RETENTION_S]
        args += [actual[key] for key in ordered]
        out = await self._finish_script(keys=keys, args=args)
        state = out[0].decode() if isinstance(out[0], bytes) else str(out[0])
        if len(out) == 1:
            return state, []
        return state, [
            (key, int(out[1 + 2 * i]), int(out[2 + 2 * i])) for i, key in enumerate(ordered)
        ]

    async def expire(self, now: float) -> int:
        args: list[str | int] = [repr(now), self._record_prefix, FINISHED_RETENTION_S, EXPIRE_BATCH]
        return int(await self._expire(keys=[self._expiry], args=args))

    async def counters(self, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        found = {}
        for key in keys:
            spent, held = await self._client.hmget(self._counter_prefix + key, ["spent", "held"])
            found[key] = (int(spent or 0), int(held or 0))
        return found

    async def close(self) -> None:
        await self._client.aclose()
