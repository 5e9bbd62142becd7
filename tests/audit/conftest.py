"""Every audit test runs against both backends: a SQLite file under ``tmp_path`` or an emptied
PostgreSQL scratch database (created per module from ``CORRAL_TEST_POSTGRES_DSN``, dropped
after). An unreachable PostgreSQL fails the test with a message saying so; nothing skips.

``AuditTarget.tamper(sql)`` runs SQL straight against the database, the way an attacker with
database access would, bypassing the log.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from audit_target import AuditTarget

POSTGRES_DSN = os.environ.get(
    "CORRAL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
T = TypeVar("T")


async def admin_connection() -> Any:
    try:
        return await asyncpg.connect(POSTGRES_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        pytest.fail(
            f"PostgreSQL is unreachable at {POSTGRES_DSN} ({error!r}): the audit suite runs "
            "against it; start it or point CORRAL_TEST_POSTGRES_DSN at one",
            pytrace=False,
        )


async def create_database() -> tuple[str, str]:
    database = f"corral_audit_{secrets.token_hex(6)}"
    admin = await admin_connection()
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    return database, urlunsplit(urlsplit(POSTGRES_DSN)._replace(path=f"/{database}"))


async def drop_database(database: str) -> None:
    admin = await admin_connection()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


def run_in_own_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(lambda: asyncio.run(make())).result()


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    database, url = run_in_own_loop(create_database)
    try:
        yield url
    finally:
        run_in_own_loop(lambda: drop_database(database))


async def empty_database(url: str) -> None:
    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def target(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[AuditTarget]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_database")
        await empty_database(url)
        audit_target = AuditTarget("postgres", url)
    else:
        audit_target = AuditTarget("sqlite", f"sqlite:///{tmp_path}/audit.db")
    try:
        yield audit_target
    finally:
        await audit_target.close_all()
