"""The Postgres session journal: many agent worker processes share the sessions.

A session is run by the worker that holds its lease (``owner``, ``lease_expires``); every
append is fenced by that lease in the same transaction that writes the events, so a worker that
lost a session (it stalled past its lease and another took over) cannot write into it any more.
Lease times are the workers' clocks (Unix seconds): keep them in sync (NTP) to well under the
lease length.

Group commit: one dedicated writer connection takes every append queued since its last commit
and writes them with one fenced UPDATE of the session rows and one INSERT of the events (both
over ``unnest`` arrays: one round trip each, whatever the batch size). Claims (activating a
passivated session) are rare and run one statement each inside the same transaction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from corral.store.session_journal import (
    Append,
    EventRow,
    GroupCommittedJournal,
    GroupCommitter,
    NewEvent,
    SessionConflict,
    SessionRow,
    check_page_size,
    fail_followers,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_sessions (
  id text PRIMARY KEY, namespace text NOT NULL, agent text NOT NULL, state text NOT NULL,
  owner text, lease_expires double precision, wake_at double precision,
  created double precision NOT NULL, updated double precision NOT NULL,
  last_seq bigint NOT NULL, summary bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_sessions_by_agent
  ON agent_sessions (namespace, agent, id COLLATE "C");
CREATE INDEX IF NOT EXISTS agent_sessions_active ON agent_sessions (lease_expires)
  WHERE state = 'active';
CREATE INDEX IF NOT EXISTS agent_sessions_wake ON agent_sessions (wake_at)
  WHERE wake_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS agent_sessions_owner ON agent_sessions (owner)
  WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS agent_events (
  session_id text NOT NULL, seq bigint NOT NULL, kind text NOT NULL, payload bytea NOT NULL,
  created double precision NOT NULL, PRIMARY KEY (session_id, seq)
);
"""
_COLUMNS = (
    "id, namespace, agent, state, owner, lease_expires, wake_at, created, updated, last_seq, "
    "summary"
)
_S_COLUMNS = ", ".join("s." + column for column in _COLUMNS.split(", "))
_INSERT_SESSIONS = (
    f"INSERT INTO agent_sessions ({_COLUMNS}) SELECT * FROM unnest($1::text[], $2::text[], "
    "$3::text[], $4::text[], $5::text[], $6::float8[], $7::float8[], $8::float8[], "
    "$9::float8[], $10::bigint[], $11::bytea[])"
)
_INSERT_EVENTS = (
    "INSERT INTO agent_events SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], "
    "$4::bytea[], $5::float8[])"
)
_UPDATE = """
UPDATE agent_sessions s SET
  last_seq = greatest(s.last_seq, u.last_seq), updated = $9,
  state = coalesce(u.state, s.state), summary = coalesce(u.summary, s.summary),
  wake_at = CASE WHEN u.wake_set THEN nullif(u.wake_at, 0) ELSE s.wake_at END,
  owner = CASE WHEN u.release THEN NULL ELSE s.owner END,
  lease_expires = CASE WHEN u.release THEN NULL ELSE s.lease_expires END
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[], $5::bool[], $6::float8[],
            $7::bool[], $8::text[])
  AS u(id, last_seq, state, summary, wake_set, wake_at, release, owner)
WHERE s.id = u.id AND (u.owner IS NULL OR s.owner = u.owner)
RETURNING s.id
"""
_CLAIM = f"""
UPDATE agent_sessions SET owner = $1, lease_expires = $2, updated = $3,
  last_seq = greatest(last_seq, $4), state = coalesce($5, state),
  summary = coalesce($6, summary), wake_at = NULL
WHERE id = $7 AND state = ANY($8::text[])
  AND (owner IS NULL OR owner = $1 OR lease_expires < $3)
RETURNING {_COLUMNS}
"""


class PostgresSessionJournal(GroupCommittedJournal):
    """Open with :meth:`open`; see ``corral.agents.journal.JournalStore`` for the contract."""

    single_process = False

    def __init__(self, pool: Any, writer: Any) -> None:
        self._pool = pool
        self._writer = writer
        self._committer = GroupCommitter(self._write_batch)

    @classmethod
    async def open(cls, dsn: str, *, pool_size: int = 4) -> PostgresSessionJournal:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size)
        try:
            # Several workers may start at once; the advisory lock serialises the DDL.
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(774411)")
                await connection.execute(SCHEMA)
            writer = await asyncpg.connect(dsn)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, writer)

    async def _write_batch(self, batch: list[Append]) -> list[BaseException | None]:
        now = time.time()
        try:
            async with self._writer.transaction():
                return await self._write(batch, now)
        except asyncpg.UniqueViolationError:
            pass
        # Slow path: a sequence number was taken. One transaction per append finds which.
        outcomes: list[BaseException | None] = [None] * len(batch)
        lost: set[str] = set()
        for index, item in enumerate(batch):
            if item.session_id in lost:
                outcomes[index] = SessionConflict(item.session_id, "an earlier append failed")
                continue
            try:
                async with self._writer.transaction():
                    (outcomes[index],) = await self._write([item], now)
            except asyncpg.UniqueViolationError:
                outcomes[index] = _taken(item)
            if outcomes[index] is not None:
                lost.add(item.session_id)
        return outcomes

    async def _write(self, batch: list[Append], now: float) -> list[BaseException | None]:
        connection = self._writer
        outcomes: list[BaseException | None] = [None] * len(batch)
        lost: set[str] = set()
        created = [item.create for item in batch if item.create is not None]
        if created:
            await connection.execute(
                _INSERT_SESSIONS, *([row[i] for row in created] for i in range(11))
            )
        for index, item in enumerate(batch):
            if item.claim:
                row = await connection.fetchrow(
                    _CLAIM,
                    item.owner,
                    now + item.lease_seconds,
                    now,
                    item.last_seq,
                    item.state,
                    item.summary,
                    item.session_id,
                    list(item.claim),
                )
                if row is None:
                    outcomes[index] = _lost(item)
                    lost.add(item.session_id)
        updates = [
            item
            for item, outcome in zip(batch, outcomes, strict=True)
            if outcome is None
            and not item.claim
            and item.create is None
            and item.session_id not in lost
        ]
        if updates:
            merged = _merge(updates)
            kept = {
                row[0]
                for row in await connection.fetch(
                    _UPDATE,
                    [m[0] for m in merged],
                    [m[1] for m in merged],
                    [m[2] for m in merged],
                    [m[3] for m in merged],
                    [m[4] for m in merged],
                    [m[5] for m in merged],
                    [m[6] for m in merged],
                    [m[7] for m in merged],
                    now,
                )
            }
            for index, item in enumerate(batch):
                if (
                    outcomes[index] is None
                    and not item.claim
                    and item.create is None
                    and item.session_id not in kept
                ):
                    outcomes[index] = _lost(item)
        fail_followers(batch, outcomes)
        events = [
            event
            for item, outcome in zip(batch, outcomes, strict=True)
            if outcome is None
            for event in item.events
        ]
        if events:
            await connection.execute(_INSERT_EVENTS, *_columns(events))
        return outcomes

    # -- reads ---------------------------------------------------------------------------

    async def read_events(self, session_id: str, after_seq: int = 0) -> list[EventRow]:
        rows = await self._pool.fetch(
            "SELECT session_id, seq, kind, payload, created FROM agent_events "
            "WHERE session_id = $1 AND seq > $2 ORDER BY seq",
            session_id,
            after_seq,
        )
        return [EventRow(*row) for row in rows]

    async def get(self, session_id: str) -> SessionRow | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM agent_sessions WHERE id = $1", session_id
        )
        return SessionRow(*row) if row else None

    async def list_sessions(
        self,
        namespace: str,
        agent: str,
        *,
        limit: int = 100,
        after: str | None = None,
        state: str | None = None,
    ) -> tuple[list[SessionRow], str | None]:
        check_page_size(limit)
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM agent_sessions WHERE namespace = $1 AND agent = $2 "
            'AND ($3::text IS NULL OR id COLLATE "C" < $3) AND ($4::text IS NULL OR state = $4) '
            'ORDER BY id COLLATE "C" DESC LIMIT $5',
            namespace,
            agent,
            after,
            state,
            limit + 1,
        )
        sessions = [SessionRow(*row) for row in rows]
        if len(sessions) > limit:
            return sessions[:limit], sessions[limit - 1].id
        return sessions, None

    # -- leases and retention --------------------------------------------------------------

    async def acquire(
        self, worker: str, *, lease_seconds: float, limit: int, now: float
    ) -> list[SessionRow]:
        # SKIP LOCKED: workers polling at once take different sessions instead of queueing.
        rows = await self._pool.fetch(
            f"""
            WITH active AS (
              SELECT id FROM agent_sessions WHERE state = 'active'
                AND (owner IS NULL OR lease_expires < $3) LIMIT $4 FOR UPDATE SKIP LOCKED
            ), due AS (
              SELECT id FROM agent_sessions WHERE wake_at <= $3 AND state <> 'active'
                AND (owner IS NULL OR lease_expires < $3) LIMIT $4 FOR UPDATE SKIP LOCKED
            )
            UPDATE agent_sessions s SET owner = $1, lease_expires = $3 + $2
            WHERE s.id IN (SELECT id FROM active UNION SELECT id FROM due)
            RETURNING {_S_COLUMNS}
            """,
            worker,
            lease_seconds,
            now,
            limit,
        )
        return [SessionRow(*row) for row in rows]

    async def renew(self, worker: str, *, lease_seconds: float) -> set[str]:
        rows = await self._pool.fetch(
            "UPDATE agent_sessions SET lease_expires = $1 WHERE owner = $2 RETURNING id",
            time.time() + lease_seconds,
            worker,
        )
        return {row[0] for row in rows}

    async def release(self, worker: str, session_ids: Sequence[str]) -> None:
        await self._pool.execute(
            "UPDATE agent_sessions SET owner = NULL, lease_expires = NULL "
            "WHERE id = ANY($1::text[]) AND owner = $2",
            list(session_ids),
            worker,
        )

    async def gc(self, *, before: float, states: Sequence[str], limit: int = 10_000) -> int:
        async with self._pool.acquire() as connection, connection.transaction():
            ids = [
                row[0]
                for row in await connection.fetch(
                    "SELECT id FROM agent_sessions WHERE state = ANY($1::text[]) "
                    "AND updated < $2 LIMIT $3 FOR UPDATE SKIP LOCKED",
                    list(states),
                    before,
                    limit,
                )
            ]
            await connection.execute(
                "DELETE FROM agent_events WHERE session_id = ANY($1::text[])", ids
            )
            await connection.execute("DELETE FROM agent_sessions WHERE id = ANY($1::text[])", ids)
        return len(ids)

    async def close(self) -> None:
        await self._committer.close()
        await self._writer.close()
        await self._pool.close()


def _columns(events: Sequence[NewEvent]) -> tuple[list[Any], ...]:
    return (
        [e[0] for e in events],
        [e[1] for e in events],
        [e[2] for e in events],
        [e[3] for e in events],
        [e[4] for e in events],
    )


def _merge(items: list[Append]) -> list[tuple[Any, ...]]:
    """One row update per session: the batch's appends of a session folded in order (an
    UPDATE … FROM unnest updates a row once, whatever the number of matching inputs)."""
    merged: dict[str, list[Any]] = {}
    for item in items:
        row = merged.get(item.session_id)
        if row is None:
            row = merged[item.session_id] = [
                item.session_id,
                0,
                None,
                None,
                False,
                None,
                False,
                item.owner,
            ]
        row[1] = max(row[1], item.last_seq)
        if item.state is not None:
            row[2] = item.state
        if item.summary is not None:
            row[3] = item.summary
        if item.wake_at is not None:
            row[4], row[5] = True, item.wake_at
        if item.release:
            row[6] = True
    return [tuple(row) for row in merged.values()]


def _taken(item: Append) -> SessionConflict:
    if item.create is not None:
        return SessionConflict(item.session_id, "a session with this id exists")
    return SessionConflict(item.session_id, f"journal sequence {item.events[0][1]} is taken")


def _lost(item: Append) -> SessionConflict:
    if item.claim:
        return SessionConflict(
            item.session_id,
            f"cannot take the session: it is not in state {'/'.join(item.claim)}, another "
            "worker holds it, or it is gone",
        )
    return SessionConflict(item.session_id, "the session is gone or leased by another worker")
