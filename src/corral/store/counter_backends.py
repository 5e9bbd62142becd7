"""What the budget ledger, the rate-limit counters and the usage records share: which backend a
URL names, safe table-name prefixes, and the SQLite file set-up of a single-process install.

``postgresql://…`` and ``redis://…`` (also ``rediss://``, ``unix://``) name shared servers;
``sqlite:///relative.db`` or ``sqlite:////abs.db`` a file of one process. Anything else is a
ValueError that says what to write instead, naming ``what`` the URL was for.
"""

from __future__ import annotations

import contextlib
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
