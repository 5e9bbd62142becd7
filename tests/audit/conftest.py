"""Every audit test runs against both backends: a SQLite file under ``tmp_path`` or an emptied
PostgreSQL scratch database (created per module from ``CORRAL_TEST_POSTGRES_DSN``, dropped
after). An unreachable PostgreSQL fails the test with a message saying so; nothing skips.

``AuditTarget.tamper(sql)`` runs SQL straight against the database, the way an attacker with
database access would, bypassing the log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from audit_target import AuditTarget

from postgres_scratch import empty_database


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
