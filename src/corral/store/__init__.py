"""Persistence: the only code that talks to a database.

One protocol (:class:`Store`), two backends: SQLite (embedded, one process) and PostgreSQL
(many processes, LISTEN/NOTIFY for watch). ``open_store(url)`` picks the backend from the URL.
"""

from corral.store.protocol import (
    ApplyOutcome,
    HistoryEntry,
    ListResult,
    Store,
    WatchEvent,
)

__all__ = ["ApplyOutcome", "HistoryEntry", "ListResult", "Store", "WatchEvent"]
