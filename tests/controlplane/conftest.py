"""Fixtures: a real SQLite store per test, a private metrics registry, a fresh Postgres database."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from corral.store import Store, open_store

DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'corral.db'}")
    yield opened
    await opened.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def postgres_dsn() -> AsyncIterator[str]:
    """A DSN for a database created for this test alone and dropped after it."""
    admin_dsn = os.environ.get("CORRAL_TEST_POSTGRES_DSN", DEFAULT_POSTGRES_DSN)
    try:
        admin = await asyncpg.connect(admin_dsn, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        pytest.fail(
            f"PostgreSQL is unreachable at {admin_dsn} ({error}); start it or point "
            "CORRAL_TEST_POSTGRES_DSN at a server where this user may create databases"
        )
    database = f"corral_cp_{uuid.uuid4().hex[:16]}"
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        parts = urlsplit(admin_dsn)
        yield urlunsplit(parts._replace(path=f"/{database}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
