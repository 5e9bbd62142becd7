"""Fixtures of the agent runtime suites: a session journal on SQLite or on a PostgreSQL
scratch database (emptied per test; the database itself is per module, see tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from corral.store.session_journal import open_session_journal
from postgres_scratch import empty_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def journal_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_database")
        await empty_database(url)
        yield url
    else:
        yield f"sqlite:///{tmp_path}/sessions.db"


@pytest.fixture
async def journal(journal_url: str) -> AsyncIterator[Any]:
    store = await open_session_journal(journal_url)
    try:
        yield store
    finally:
        await store.close()
