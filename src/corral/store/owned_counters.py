"""Budget and rate-limit counters owned by one gateway process: memory first, the file a journal.

The default install is one process on SQLite. There the counters need no database round trip
per request: this process is the only one that changes them (it holds an exclusive lock on the
file, see ``corral.store.counter_backends.CounterFileLock``), so plain dictionaries are exact,
and a reserve, a rate-limit admission or a release costs a few dictionary operations instead
of a ``BEGIN IMMEDIATE`` transaction. The SQLite file keeps what must outlive the process:

- **Budgets**: what was *spent*. A settle updates memory and then waits for the group commit
  that writes every counter changed since the last one (one transaction per
  ``commit_delay_s``, however many requests settled in it), so a settled charge is on disk
  before the request's task ends. Holds are not written: they belong to requests in flight,
  which die with the process; a restart starts with nothing held, exactly as the shared backends
  look once the dead process's holds expire. What a ``kill -9`` can lose is the charges of the
  requests that finished in the last ``commit_delay_s`` (2 ms by default), which were not
  durable yet.
- **Rate limits**: the per-minute window counts, written behind every ``flush_interval_s``
  (1 s) without anybody waiting, because a limit is about the last two minutes: a crash loses
  at most that second of counts. Concurrency leases are not written; their requests died too.

Several gateway processes need shared counters (``postgresql://…`` or ``redis://…``): opening
an owned file that another process holds fails with a message that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from collections.abc import Mapping, Sequence

from corral.store.counter_backends import (
    CounterFileLock,
    check_table_name,
    immediate_transaction,
    open_sqlite_file,
)
from corral.store.ratelimit_counters import EPSILON, Answer, CheckArgs, Correction

State = tuple[str, int, int]
Hold = tuple[str, int, int | None]
FINISHED_KEEP = 4_096
"""Finished reservation ids remembered (at least this many, the latest), so a duplicate settle
is a no-op, not an error (the gateway settles each reservation once; this guards against a
caller that does not). The oldest are dropped in bulk once there are twice as many."""


class OwnedBudgetCounters:
    """Budget counters in memory, spent amounts group-committed to a SQLite file."""

    def __init__(
        self, path: str, *, name: str = "corral_budget", commit_delay_s: float = 0.002
    ) -> None:
        name = check_table_name(name)
        self._table = f"{name}_counters"
        self._commit_delay_s = commit_delay_s
        self._lock = CounterFileLock(path, exclusive=True, what="budget counters")
        try:
            self._db = open_sqlite_file(path, synchronous="NORMAL")
            self._spent = self._load(name)
        except BaseException:
            self._lock.release()
            raise
        self._held: dict[str, int] = {}
        self._open: dict[str, tuple[dict[str, int], float]] = {}
        # Settled and released ids keep only their state; expired ones their holds too, since
        # a late settle still charges them.
        # Oldest first (a plain dict keeps insertion order; trimmed in bulk by ``_remember``).
        self._finished: dict[str, tuple[str, dict[str, int] | None]] = {}
        self._dirty: set[str] = set()
        # The settles waiting for the next group commit, one future each (cancelling one
        # waiter leaves the others and the commit alone).
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None

    def _load(self, name: str) -> dict[str, int]:
        self._db.executescript(
            f"CREATE TABLE IF NOT EXISTS {self._table} (key TEXT PRIMARY KEY,"
            " spent INTEGER NOT NULL DEFAULT 0, held INTEGER NOT NULL DEFAULT 0);"
            f"CREATE TABLE IF NOT EXISTS {name}_reservations (id TEXT PRIMARY KEY,"
            " state TEXT NOT NULL, expires_at REAL NOT NULL, holds TEXT NOT NULL);"
        )
        with immediate_transaction(self._db) as db:
            # Holds in the file were left by processes that are gone (a shared-mode run
            # before this one): their requests died with them, so nothing is held now.
            db.execute(f"UPDATE {self._table} SET held = 0 WHERE held != 0")
            db.execute(f"UPDATE {name}_reservations SET state = 'expired' WHERE state = 'held'")
            return dict(db.execute(f"SELECT key, spent FROM {self._table}").fetchall())

    async def reserve(
        self, reservation_id: str, holds: Sequence[Hold], expires_at: float
    ) -> tuple[bool, list[State]]:
        spent_of, held_of = self._spent, self._held
        states = []
        for key, amount, limit in sorted(holds):
            spent, held = spent_of.get(key, 0), held_of.get(key, 0)
            if limit is not None and spent + held + amount > limit:
                return False, [(key, spent, held)]
            states.append((key, spent, held + amount))
        for key, amount, _limit in holds:
            held_of[key] = held_of.get(key, 0) + amount
        self._open[reservation_id] = ({key: amount for key, amount, _ in holds}, expires_at)
        return True, states

    async def settle(
        self, reservation_id: str, actual: Mapping[str, int]
    ) -> tuple[str, list[State]]:
        state, holds, back = self._take(reservation_id)
        if state not in ("held", "expired"):
            return state, []
        spent_of, held_of, dirty = self._spent, self._held, self._dirty
        states = []
        for key in sorted(holds):
            held = held_of.get(key, 0) - (holds[key] if back else 0)
            spent = spent_of.get(key, 0) + actual.get(key, 0)
            held_of[key], spent_of[key] = held, spent
            dirty.add(key)
            states.append((key, spent, held))
        self._remember(reservation_id, "settled", None)
        # Wait for the group commit that writes this charge (see the module docstring).
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        if self._timer is None:
            self._timer = loop.call_later(self._commit_delay_s, self._commit)
        await waiter
        return state, states

    async def release(self, reservation_id: str) -> str:
        state, holds, _counted = self._take(reservation_id)
        if state == "held":
            for key, amount in holds.items():
                self._held[key] -= amount
            self._remember(reservation_id, "released", None)
        elif state == "expired":
            self._remember(reservation_id, state, holds)
        return state

    def _take(self, reservation_id: str) -> tuple[str, dict[str, int], bool]:
        """(state, holds, whether the holds are still counted) of a reservation."""
        entry = self._open.pop(reservation_id, None)
        if entry is not None:
            return "held", entry[0], True
        finished = self._finished.get(reservation_id)
        if finished is None:
            return "unknown", {}, False
        return finished[0], finished[1] or {}, False

    def _remember(self, reservation_id: str, state: str, holds: dict[str, int] | None) -> None:
        finished = self._finished
        if reservation_id in finished:  # expired, now released: it moves to the end
            del finished[reservation_id]
        finished[reservation_id] = (state, holds)
        if len(finished) > 2 * FINISHED_KEEP:
            # In bulk, once per FINISHED_KEEP settles: dropping the oldest one at a time costs
            # an ordered dictionary's bookkeeping on every settle.
            for old in list(itertools.islice(finished, len(finished) - FINISHED_KEEP)):
                del finished[old]

    async def expire(self, now: float) -> int:
        gone = [rid for rid, (_holds, expires_at) in self._open.items() if expires_at < now]
        for reservation_id in gone:
            holds, _expires_at = self._open.pop(reservation_id)
            for key, amount in holds.items():
                self._held[key] -= amount
            self._remember(reservation_id, "expired", holds)
        return len(gone)

    async def counters(self, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        return {key: (self._spent.get(key, 0), self._held.get(key, 0)) for key in keys}

    def _commit(self) -> None:
        waiters, self._waiters, self._timer = self._waiters, [], None
        try:
            self._write()
        except (sqlite3.Error, OSError) as error:
            for waiter in waiters:
                if not waiter.done():  # a cancelled waiter's task is gone
                    waiter.set_exception(error)
        else:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _write(self) -> None:
        keys, self._dirty = self._dirty, set()
        try:
            with immediate_transaction(self._db) as db:
                db.executemany(
                    f"INSERT INTO {self._table} (key, spent) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET spent = excluded.spent",
                    [(key, self._spent[key]) for key in sorted(keys)],
                )
        except BaseException:
            self._dirty |= keys  # written with the next commit
            raise

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        try:
            self._commit()
        finally:
            self._db.close()
            self._lock.release()


class OwnedRateLimitCounters:
    """Rate-limit windows and leases in memory; window counts written behind to SQLite."""

    def __init__(
        self, path: str, *, name: str = "corral_ratelimit", flush_interval_s: float = 1.0
    ) -> None:
        name = check_table_name(name, "rate-limit counter")
        self._table = f"{name}_windows"
        self._flush_interval_s = flush_interval_s
        self._lock = CounterFileLock(path, exclusive=True, what="rate-limit counters")
        try:
            self._db = open_sqlite_file(path, synchronous="OFF")
            self._db.executescript(
                f"CREATE TABLE IF NOT EXISTS {self._table} (key TEXT NOT NULL,"
                " win INTEGER NOT NULL, used INTEGER NOT NULL, PRIMARY KEY (key, win))"
                " WITHOUT ROWID;"
                f"CREATE TABLE IF NOT EXISTS {name}_leases (key TEXT NOT NULL, id TEXT NOT NULL,"
                " expires_at REAL NOT NULL, PRIMARY KEY (key, id)) WITHOUT ROWID;"
                f"DELETE FROM {name}_leases;"
            )
            rows = self._db.execute(f"SELECT key, win, used FROM {self._table}").fetchall()
        except BaseException:
            self._lock.release()
            raise
        self._windows: dict[tuple[str, int], int] = {(key, win): used for key, win, used in rows}
        self._leases: dict[str, dict[str, float]] = {}
        self._dirty: set[tuple[str, int]] = set()
        self._oldest_kept: int | None = None
        self._timer: asyncio.TimerHandle | None = None

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
        windows, leases = self._windows, self._leases
        previous_window = window - 1
        for index, (key, windowed, limit, amount) in enumerate(checks):
            if windowed:
                current = windows.get((key, window), 0)
                previous = windows.get((key, previous_window), 0)
                after = current + previous * weight + amount
                if after > limit + EPSILON:
                    return Answer(False, (), index, current, previous)
                used.append(after)
            else:
                held = leases.get(key)
                in_flight = 0 if held is None else len(held)
                if in_flight + 1 > limit and held is not None:
                    # Only a full limit needs to know which slots expired (their process
                    # stopped renewing them): most admissions skip the walk.
                    in_flight = _live(held, now)
                if in_flight + 1 > limit:
                    return Answer(False, (), index, in_flight, 0)
                used.append(in_flight + 1)
        dirty = self._dirty
        for key, windowed, _limit, amount in checks:
            if windowed:
                counted = (key, window)
                windows[counted] = windows.get(counted, 0) + amount
                dirty.add(counted)
            else:
                leases.setdefault(key, {})[lease_id] = lease_expires
        self._flush_later()
        return Answer(True, tuple(used), -1, 0, 0)

    async def finish(
        self, lease_id: str, slot_keys: Sequence[str], corrections: Sequence[Correction]
    ) -> None:
        leases = self._leases
        for key in slot_keys:
            held = leases.get(key)
            if held is not None:
                held.pop(lease_id, None)
                if not held:
                    del leases[key]
        if corrections:
            windows, dirty = self._windows, self._dirty
            for key, win, delta in corrections:
                counted = (key, win)
                used = windows.get(counted)
                if used is not None:
                    windows[counted] = max(used + delta, 0)
                    dirty.add(counted)
        self._flush_later()

    async def renew(self, leases: Sequence[tuple[str, str]], expires_at: float) -> None:
        for key, lease_id in leases:
            held = self._leases.get(key)
            if held is not None and lease_id in held:
                held[lease_id] = expires_at

    async def sweep(self, now: float, window: int) -> None:
        for key_win in [kw for kw in self._windows if kw[1] < window - 1]:
            del self._windows[key_win]
            self._dirty.discard(key_win)
        self._oldest_kept = window - 1
        for key in list(self._leases):
            _live(self._leases[key], now)
            if not self._leases[key]:
                del self._leases[key]
        self._flush_later()

    def _flush_later(self) -> None:
        if self._timer is None and (self._dirty or self._oldest_kept is not None):
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._flush_interval_s, self._flush)

    def _flush(self) -> None:
        self._timer = None
        dirty, self._dirty = self._dirty, set()
        oldest, self._oldest_kept = self._oldest_kept, None
        rows = [(key, win, self._windows[key, win]) for key, win in dirty]
        try:
            with immediate_transaction(self._db) as db:
                db.executemany(
                    f"INSERT INTO {self._table} (key, win, used) VALUES (?, ?, ?)"
                    " ON CONFLICT (key, win) DO UPDATE SET used = excluded.used",
                    sorted(rows),
                )
                if oldest is not None:
                    db.execute(f"DELETE FROM {self._table} WHERE win < ?", (oldest,))
        except (sqlite3.Error, OSError):
            # Counts stay exact in memory; the file catches up with the next flush.
            self._dirty |= dirty
            if oldest is not None and self._oldest_kept is None:
                self._oldest_kept = oldest

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        try:
            with contextlib.suppress(sqlite3.Error, OSError):
                self._flush()
        finally:
            self._db.close()
            self._lock.release()


def _live(leases: dict[str, float], now: float) -> int:
    """Drop expired leases (their process stopped renewing them); how many are left."""
    expired = [lease_id for lease_id, expires_at in leases.items() if expires_at < now]
    for lease_id in expired:
        del leases[lease_id]
    return len(leases)
