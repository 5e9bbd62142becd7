"""``open_store(url)``: the one way callers get a store; the URL scheme picks the backend.

``sqlite:///relative.db`` and ``sqlite:////absolute/path.db`` (SQLAlchemy's convention: three
slashes, then the path) open the embedded store; ``postgresql://…`` or ``postgres://…`` open the
PostgreSQL store with the URL passed to asyncpg unchanged. Options are the backend's keyword
arguments (``event_retention`` for both, ``poll_interval``, pool sizes for Postgres).
"""

from __future__ import annotations

import inspect
from typing import Any
from urllib.parse import urlsplit

from corral.store.postgres import PostgresStore
from corral.store.protocol import Store
from corral.store.sqlite import SqliteStore

_EXAMPLES = "sqlite:///state.db, sqlite:////abs/path/state.db or postgresql://user@host:5432/db"


async def open_store(url: str, **options: Any) -> Store:
    """Open the store ``url`` names; raise ValueError for a URL or option it cannot use."""
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"store URL {url!r} has no scheme: use {_EXAMPLES}")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        path = sqlite_path(url)
        _check_options(SqliteStore.open, options, "sqlite")
        return await SqliteStore.open(path, **options)
    if scheme in ("postgresql", "postgres"):
        _check_postgres_url(url)
        _check_options(PostgresStore.open, options, "postgres")
        return await PostgresStore.open(url, **options)
    raise ValueError(f"store URL {url!r}: unknown scheme {scheme!r}; use {_EXAMPLES}")


def sqlite_path(url: str) -> str:
    """The file path in a ``sqlite:///`` URL (``:memory:`` is allowed for throwaway stores)."""
    rest = url.split("://", 1)[1]
    if not rest.startswith("/"):
        raise ValueError(
            f"store URL {url!r}: a SQLite URL has no host; write sqlite:///relative.db "
            "or sqlite:////absolute/path.db"
        )
    path = rest[1:]
    if not path or "?" in path or "#" in path:
        raise ValueError(
            f"store URL {url!r}: expected a file path after 'sqlite:///' and nothing else "
            "(options are keyword arguments to open_store)"
        )
    return path


def _check_postgres_url(url: str) -> None:
    try:
        urlsplit(url).port  # noqa: B018 - parsing the port is the check
    except ValueError as error:
        raise ValueError(f"store URL {url!r}: {error}") from None
    # No host is fine: libpq's defaults (PGHOST, the local socket) apply, as asyncpg does.


def _check_options(opener: Any, options: dict[str, Any], backend: str) -> None:
    known = [
        name
        for name, parameter in inspect.signature(opener).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"unknown {backend} store option(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
