"""Fixtures: a real SQLite store per test, a private metrics registry, a fresh Postgres database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from corral.store import Store, open_store
from postgres_scratch import create_database, drop_database


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
    database, url = await create_database("corral_cp")
    try:
        yield url
    finally:
        await drop_database(database)
