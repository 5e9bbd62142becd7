"""The SQLite session journal: one process, WAL, group commit on a writer thread.

One process owns the file (an exclusive lock on ``<file>.lock``), so a lease held by any other
worker id belongs to a dead process and is free at once: a restart after a crash resumes every
session immediately instead of waiting for leases to lapse. Writes run on one thread (the
batch commit and the lease statements queue there in order); reads use a second connection on
the event loop's thread, which WAL lets read while the writer commits (a read is a primary-key
range, tens of microseconds, cheaper than a hop to a thread).
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import time
from collections.abc import Awaitable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from corral.store.counter_backends import CounterFileInUse, CounterFileLock, open_sqlite_file
from corral.store.session_journal import (
    Append,
    EventRow,
    GroupCommittedJournal,
    GroupCommitter,
    NewEvent,
    SessionConflict,
    SessionRow,
    check_page_size,
)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_sessions (
  id TEXT PRIMARY KEY, namespace TEXT NOT NULL, agent TEXT NOT NULL, state TEXT NOT NULL,
  owner TEXT, lease_expires REAL, wake_at REAL, created REAL NOT NULL, updated REAL NOT NULL,
  last_seq INTEGER NOT NULL, summary BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS agent_sessions_by_agent ON agent_sessions (namespace, agent, id);
CREATE INDEX IF NOT EXISTS agent_sessions_active ON agent_sessions (state)
  WHERE state = 'active';
CREATE INDEX IF NOT EXISTS agent_sessions_wake ON agent_sessions (wake_at)
  WHERE wake_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS agent_events (
  session_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, payload BLOB NOT NULL,
  created REAL NOT NULL, PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
"""
WAL_AUTOCHECKPOINT = 10_000
"""Pages (4 KiB) of WAL before the writer copies them into the file, not SQLite's 1,000: the
rows of live sessions dirty the same pages over and over, and a page is copied once per
checkpoint however often it changed in between (fewer, larger checkpoints; the WAL file may
grow to ~40 MB). Durability is the same: a commit is in the WAL either way."""
_COLUMNS = (
    "id, namespace, agent, state, owner, lease_expires, wake_at, created, updated, last_seq, "
    "summary"
)
_INSERT_SESSION = (
    f"INSERT INTO agent_sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_EVENT = "INSERT INTO agent_events VALUES (?, ?, ?, ?, ?)"
# One statement per append: fences the lease (a worker that lost its lease cannot write) and
# keeps the row's last_seq/updated/state in step with the events in the same transaction.
_UPDATE = (
    "UPDATE agent_sessions SET last_seq = max(last_seq, ?), updated = ?, "
    "state = coalesce(?, state), summary = coalesce(?, summary), "
    "wake_at = CASE WHEN ? THEN nullif(?, 0) ELSE wake_at END, "
    "owner = CASE WHEN ? THEN NULL ELSE owner END, "
    "lease_expires = CASE WHEN ? THEN NULL ELSE lease_expires END "
    "WHERE id = ?"
)


class SqliteSessionJournal(GroupCommittedJournal):
    """Open with :meth:`open`; see ``corral.agents.journal.JournalStore`` for the contract."""

    single_process = True

    def __init__(
        self,
        lock: CounterFileLock,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        thread: ThreadPoolExecutor,
    ) -> None:
        self._lock = lock
        self._writer = writer
        self._reader = reader
        self._thread = thread
        self._committer = GroupCommitter(self._write_batch)
        self._owners: dict[str, str] = {}
        """Leases held now (writer thread only): this process is the file's only writer."""

    @classmethod
    async def open(cls, path: str) -> SqliteSessionJournal:
        try:
            lock = CounterFileLock(path, exclusive=True, what="agent sessions")
        except CounterFileInUse as error:
            raise CounterFileInUse(
                f"the agent session journal {path} is in use by another process; one process "
                "runs the sessions of a SQLite journal (for several agent workers use "
                "postgresql://…)"
            ) from error
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-sqlite")

        def connect() -> sqlite3.Connection:
            db = open_sqlite_file(path, synchronous="NORMAL")
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
            return db

        try:
            writer = await asyncio.get_running_loop().run_in_executor(thread, connect)
            reader = open_sqlite_file(path, synchronous="NORMAL")
        except BaseException:
            thread.shutdown(wait=False)
            lock.release()
            raise
        return cls(lock, writer, reader, thread)

    def _on_thread(self, work: Any, *args: Any) -> Awaitable[Any]:
        return asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    # -- the writer thread -------------------------------------------------------------

    def _apply(
        self,
        db: sqlite3.Connection,
        item: Append,
        now: float,
        leases: MutableMapping[str, str | None],
        creates: list[SessionRow] | None = None,
    ) -> bool:
        """The session-row half of one append; False when the lease or claim does not hold.

        Lease changes go to ``leases`` (this commit's view), merged into ``_owners`` once it
        commits. The fence is a dictionary lookup, not a statement: only this process writes
        the file, so ``_owners`` is exact, and a plain step (no state change) costs one
        event-row insert. ``creates``: session rows of this batch not inserted yet (they are
        inserted, and the list emptied, before a statement that may update one of them).
        """
        sid = item.session_id
        if item.create is not None:
            db.execute(_INSERT_SESSION, item.create)
            if item.create.owner is not None:
                leases[sid] = item.create.owner
            return True
        if item.claim:
            _insert_sessions(db, creates)
            marks = ", ".join("?" * len(item.claim))
            cursor = db.execute(
                f"UPDATE agent_sessions SET owner = ?, lease_expires = ?, updated = ?, "
                f"last_seq = max(last_seq, ?), state = coalesce(?, state), "
                f"summary = coalesce(?, summary), wake_at = NULL "
                f"WHERE id = ? AND state IN ({marks})",
                (
                    item.owner,
                    now + item.lease_seconds,
                    now,
                    item.last_seq,
                    item.state,
                    item.summary,
                    sid,
                    *item.claim,
                ),
            )
            if cursor.rowcount != 1:
                return False
            leases[sid] = item.owner
            return True
        if item.owner is not None:
            owner = leases[sid] if sid in leases else self._owners.get(sid)
            if owner != item.owner:
                return False
        if (
            item.state is None
            and item.summary is None
            and item.wake_at is None
            and not item.release
        ):
            return True
        _insert_sessions(db, creates)
        cursor = db.execute(
            _UPDATE,
            (
                item.last_seq,
                now,
                item.state,
                _blob(item.summary),
                1 if item.wake_at is not None else 0,  # ints, not bools: see _blob
                item.wake_at,
                1 if item.release else 0,
                1 if item.release else 0,
                sid,
            ),
        )
        if item.release:
            leases[sid] = None
        return cursor.rowcount == 1

    def _settle(self, leases: dict[str, str | None]) -> None:
        for sid, owner in leases.items():
            if owner is None:
                self._owners.pop(sid, None)
            else:
                self._owners[sid] = owner

    def _write_batch_sync(self, batch: list[Append]) -> list[BaseException | None]:
        db = self._writer
        now = time.time()
        outcomes: list[BaseException | None] = [None] * len(batch)
        leases: dict[str, str | None] = {}
        db.execute("BEGIN IMMEDIATE")
        try:
            events: list[NewEvent] = []
            creates: list[SessionRow] = []
            lost: set[str] = set()
            owners = self._owners
            for index, item in enumerate(batch):
                sid = item.session_id
                create = item.create
                if sid in lost:
                    outcomes[index] = _lost(item)
                    continue
                if create is not None:
                    # New rows go in with one statement, before any update that may touch them.
                    creates.append(create)
                    if create.owner is not None:
                        leases[sid] = create.owner
                elif (
                    item.state is None
                    and item.summary is None
                    and item.wake_at is None
                    and not item.release
                    and not item.claim
                    and item.owner is not None
                    and (leases[sid] if sid in leases else owners.get(sid)) == item.owner
                ):
                    pass  # a plain step of a session this worker holds (_apply, without a call)
                elif not self._apply(db, item, now, leases, creates):
                    lost.add(sid)
                    outcomes[index] = _lost(item)
                    continue
                events.extend(item.events)
            _insert_sessions(db, creates)
            db.executemany(  # the payload as bytearray: see _blob
                _INSERT_EVENT, [(s, n, k, bytearray(p), c) for s, n, k, p, c in events]
            )
        except sqlite3.IntegrityError:
            db.execute("ROLLBACK")
            return self._write_one_by_one(batch, now)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._settle(leases)
        return outcomes

    def _write_one_by_one(self, batch: list[Append], now: float) -> list[BaseException | None]:
        """The slow path after a taken sequence number: a savepoint per append."""
        db = self._writer
        outcomes: list[BaseException | None] = [None] * len(batch)
        leases: dict[str, str | None] = {}
        db.execute("BEGIN IMMEDIATE")
        try:
            lost: set[str] = set()
            for index, item in enumerate(batch):
                if item.session_id in lost:
                    outcomes[index] = SessionConflict(item.session_id, "an earlier append failed")
                    continue
                db.execute("SAVEPOINT one")
                mine: dict[str, str | None] = {}
                try:
                    if not self._apply(db, item, now, collections.ChainMap(mine, leases)):
                        outcomes[index] = _lost(item)
                    else:
                        db.executemany(_INSERT_EVENT, item.events)
                except sqlite3.IntegrityError:
                    outcomes[index] = _taken(item)
                if outcomes[index] is not None:
                    lost.add(item.session_id)
                    db.execute("ROLLBACK TO one")
                else:
                    leases.update(mine)
                db.execute("RELEASE one")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._settle(leases)
        return outcomes

    async def _write_batch(self, batch: list[Append]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = await self._on_thread(self._write_batch_sync, batch)
        return outcomes

    # -- reads ---------------------------------------------------------------------------

    async def read_events(self, session_id: str, after_seq: int = 0) -> list[EventRow]:
        rows = self._reader.execute(
            "SELECT session_id, seq, kind, payload, created FROM agent_events "
            "WHERE session_id = ? AND seq > ? ORDER BY seq",
            (session_id, after_seq),
        ).fetchall()
        return [EventRow(*row) for row in rows]

    async def get(self, session_id: str) -> SessionRow | None:
        row = self._reader.execute(
            f"SELECT {_COLUMNS} FROM agent_sessions WHERE id = ?", (session_id,)
        ).fetchone()
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
        sql = f"SELECT {_COLUMNS} FROM agent_sessions WHERE namespace = ? AND agent = ?"
        args: list[Any] = [namespace, agent]
        if after is not None:
            sql += " AND id < ?"
            args.append(after)
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit + 1)
        rows = [SessionRow(*row) for row in self._reader.execute(sql, args).fetchall()]
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1].id
        return rows, None

    # -- leases and retention (on the writer thread, in order with the commits) ------------

    async def acquire(
        self, worker: str, *, lease_seconds: float, limit: int, now: float
    ) -> list[SessionRow]:
        def work() -> list[SessionRow]:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                # Any owner but this process is a dead process (the file lock says so).
                ids = [
                    row[0]
                    for row in db.execute(
                        "SELECT id FROM agent_sessions WHERE state = 'active' AND "
                        "(owner IS NULL OR owner != ?) LIMIT ?",
                        (worker, limit),
                    )
                ]
                ids += [
                    row[0]
                    for row in db.execute(
                        "SELECT id FROM agent_sessions WHERE wake_at IS NOT NULL AND "
                        "wake_at <= ? AND state != 'active' AND (owner IS NULL OR owner != ?) "
                        "LIMIT ?",
                        (now, worker, max(0, limit - len(ids))),
                    )
                ]
                rows: list[SessionRow] = []
                for session_id in ids:
                    row = db.execute(
                        f"UPDATE agent_sessions SET owner = ?, lease_expires = ? WHERE id = ? "
                        f"RETURNING {_COLUMNS}",
                        (worker, now + lease_seconds, session_id),
                    ).fetchone()
                    rows.append(SessionRow(*row))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            for row in rows:
                self._owners[row.id] = worker
            return rows

        result: list[SessionRow] = await self._on_thread(work)
        return result

    async def renew(self, worker: str, *, lease_seconds: float) -> set[str]:
        def work() -> set[str]:
            rows = self._writer.execute(
                "UPDATE agent_sessions SET lease_expires = ? WHERE owner = ? RETURNING id",
                (time.time() + lease_seconds, worker),
            ).fetchall()
            return {row[0] for row in rows}

        result: set[str] = await self._on_thread(work)
        return result

    async def release(self, worker: str, session_ids: Sequence[str]) -> None:
        def work() -> None:
            self._writer.executemany(
                "UPDATE agent_sessions SET owner = NULL, lease_expires = NULL "
                "WHERE id = ? AND owner = ?",
                [(session_id, worker) for session_id in session_ids],
            )
            for session_id in session_ids:
                if self._owners.get(session_id) == worker:
                    del self._owners[session_id]

        await self._on_thread(work)

    async def gc(self, *, before: float, states: Sequence[str], limit: int = 10_000) -> int:
        marks = ", ".join("?" * len(states))

        def work() -> int:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                ids = db.execute(
                    f"SELECT id FROM agent_sessions WHERE state IN ({marks}) AND updated < ? "
                    f"LIMIT ?",
                    (*states, before, limit),
                ).fetchall()
                db.executemany("DELETE FROM agent_events WHERE session_id = ?", ids)
                db.executemany("DELETE FROM agent_sessions WHERE id = ?", ids)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            for (session_id,) in ids:
                self._owners.pop(session_id, None)
            return len(ids)

        deleted: int = await self._on_thread(work)
        return deleted

    async def close(self) -> None:
        await self._committer.close()
        await self._on_thread(self._writer.close)
        self._reader.close()
        self._thread.shutdown(wait=True)
        self._lock.release()


def _insert_sessions(db: sqlite3.Connection, creates: list[SessionRow] | None) -> None:
    """Insert the batch's new session rows not inserted yet (then none are left)."""
    if creates:
        db.executemany(_INSERT_SESSION, [(*row[:10], _blob(row[10])) for row in creates])
        creates.clear()


def _blob(value: bytes | None) -> bytearray | None:
    """``bytes`` as ``bytearray`` for a statement parameter: the sqlite3 module binds str, int,
    float and bytearray as they are, but sends any other type (bytes and bool included) through
    its adapter lookup, which builds and drops an ``AttributeError`` each time (over a thousand
    instructions a parameter; every journal row has one). The stored BLOB is the same, and a
    BLOB reads back as ``bytes``."""
    return None if value is None else bytearray(value)


def _taken(item: Append) -> SessionConflict:
    if item.create is not None:
        return SessionConflict(item.session_id, "a session with this id exists")
    return SessionConflict(item.session_id, f"journal sequence {item.events[0][1]} is taken")


def _lost(item: Append) -> SessionConflict:
    if item.claim:
        return SessionConflict(
            item.session_id,
            f"cannot take the session: it is not in state {'/'.join(item.claim)} or is gone",
        )
    return SessionConflict(item.session_id, "the session is gone or leased by another worker")
