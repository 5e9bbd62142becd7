"""Persistence: the only code that talks to a database.

One protocol (:class:`Store`), two backends: SQLite (embedded, one process) and PostgreSQL
(many processes, LISTEN/NOTIFY for watch). ``open_store(url)`` picks the backend from the URL.
"""

from corral.store.postgres import PostgresStore
from corral.store.protocol import (
    ApplyOutcome,
    HistoryEntry,
    ListResult,
    Store,
    WatchEvent,
)
from corral.store.selectors import LabelSelector, parse_selector
from corral.store.sqlite import SqliteStore
from corral.store.urls import open_store

__all__ = [
    "ApplyOutcome",
    "HistoryEntry",
    "LabelSelector",
    "ListResult",
    "PostgresStore",
    "SqliteStore",
    "Store",
    "WatchEvent",
    "open_store",
    "parse_selector",
]
