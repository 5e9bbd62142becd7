"""Scratch PostgreSQL databases for the suites that run against the real server.

Each database is created from ``CORRAL_TEST_POSTGRES_DSN`` (default: the local trust-auth
server) with a random name and dropped after use. An unreachable server fails the test with a
message saying so: corral's suite never skips PostgreSQL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

POSTGRES_DSN = os.environ.get(
    "CORRAL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
T = TypeVar("T")


def database_url(database: str, dsn: str = POSTGRES_DSN) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


async def admin_connection() -> Any:
    try:
        return await asyncpg.connect(POSTGRES_DSN, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        pytest.fail(
            f"PostgreSQL is unreachable at {POSTGRES_DSN} ({error!r}): corral's tests run "
            "against it; start it or point CORRAL_TEST_POSTGRES_DSN at a server where this "
            "user may create databases",
            pytrace=False,
        )


async def create_database(prefix: str = "corral_t") -> tuple[str, str]:
    """A new empty database: its name and its URL."""
    database = f"{prefix}_{secrets.token_hex(6)}"
    admin = await admin_connection()
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    return database, database_url(database)


async def drop_database(database: str) -> None:
    admin = await admin_connection()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


async def empty_database(url: str) -> None:
    """Back to a just-created database (whoever opens it next recreates its schema)."""
    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()


def run_in_own_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code that may sit inside a running loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(lambda: asyncio.run(make())).result()
