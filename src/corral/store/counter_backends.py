"""What the budget ledger, the rate-limit counters and the usage records share: which backend a
URL names, safe table-name prefixes, and the SQLite file set-up of a single-process install.

``postgresql://…`` and ``redis://…`` (also ``rediss://``, ``unix://``) name shared servers;
``sqlite:///relative.db`` or ``sqlite:////abs.db`` a file of one process. Anything else is a
ValueError that says what to write instead, naming ``what`` the URL was for.

A SQLite counter file is either *owned* by one gateway process, which keeps the counters in
memory and the file as its journal (``corral.store.owned_counters``), or *shared* by processes
that each run a transaction per change. ``lock_counter_file`` keeps the two apart: the owner
holds an exclusive lock on ``<file>.lock``, sharers a shared one, so an owner never runs beside
anybody else on the same file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
from collections.abc import Iterator
from typing import Literal

CounterBackend = Literal["postgres", "redis", "sqlite"]
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def counter_backend(url: str, what: str) -> tuple[CounterBackend, str]:
    """The backend ``url`` names and, for SQLite, the file path (else the URL unchanged)."""
    scheme = url.split("://", 1)[0].lower() if isinstance(url, str) and "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        return "postgres", url
    if scheme in ("redis", "rediss", "unix"):
        return "redis", url
    if scheme == "sqlite":
        path = url.split("://", 1)[1]
        if not path.startswith("/") or len(path) < 2:
            raise ValueError(
                f"{what} URL {url!r}: write sqlite:///relative.db or sqlite:////abs.db"
            )
        return "sqlite", path[1:]
    raise ValueError(
        f"{what} URL {url!r}: use postgresql://user@host/db, redis://host:6379/0 "
        "or sqlite:///path.db"
    )


def check_table_name(name: str, what: str = "budget counter") -> str:
    """``name`` when it is safe to put into SQL as a table prefix, else ValueError."""
    if not _NAME.match(name):
        raise ValueError(f"{what} name {name!r}: use 1-40 of a-z, 0-9, _ (letter first)")
    return name


def open_sqlite_file(path: str, *, synchronous: Literal["NORMAL", "OFF"]) -> sqlite3.Connection:
    """One autocommit connection in WAL mode that waits up to 10 s for another writer."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=10000")
    return db


@contextlib.contextmanager
def immediate_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: the write lock is taken up front, so a check and the
    write that follows it see the same counts; rolled back on any error (or left to a caller
    that already rolled back)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    if db.in_transaction:
        db.execute("COMMIT")


class CounterFileInUse(RuntimeError):
    """Another process holds the counter file in a way that excludes this one."""


class CounterFileLock:
    """An advisory lock on ``<path>.lock`` held for as long as the counters are open."""

    def __init__(self, path: str, *, exclusive: bool, what: str) -> None:
        lock_path = f"{path}.lock"
        self._fd: int | None = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(self._fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode("ascii", "replace").strip()
            os.close(self._fd)
            self._fd = None
            owner = f" (pid {holder})" if holder.isdigit() else ""
            raise CounterFileInUse(
                f"the {what} in {path} are already in use by another process{owner}. One "
                "gateway process owns a SQLite counter file; to run several gateway processes, "
                "point CORRAL_COUNTERS_URL at postgresql://… or redis://…"
                if exclusive
                else f"the {what} in {path} are owned by a gateway process{owner}, which keeps "
                "them in memory; open them through that process's API, or use "
                "postgresql://… or redis://… counters for several processes"
            ) from None
        if exclusive:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, str(os.getpid()).encode("ascii"), 0)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
