"""Which counter backend a URL names, for the budget ledger and the rate-limit counters alike.

``postgresql://…`` and ``redis://…`` (also ``rediss://``, ``unix://``) name shared servers;
``sqlite:///relative.db`` or ``sqlite:////abs.db`` a file of one process. Anything else is a
ValueError that says what to write instead, naming ``what`` the URL was for.
"""

from __future__ import annotations

from typing import Literal

CounterBackend = Literal["postgres", "redis", "sqlite"]


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
