"""``AuditLog.submit`` (the request path's way in: no waiting) and the log outside its database:
records and checkpoints as JSON, a paged read-only view and a SQLite file opened read-only, all
of which ``verify`` walks exactly as it walks the storage itself."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from audit_target import AuditTarget, event

from corral.audit import AuditLogClosed, UnreadableRecord, verify
from corral.audit.wire import (
    PagedLog,
    SqliteAuditFile,
    checkpoint_from_json,
    checkpoint_to_json,
    record_from_json,
    record_to_json,
)


class FailingStorage:
    """A storage whose appends always fail (the database went away)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append(self, build: Any) -> Any:
        raise ConnectionError(f"database unreachable (batch builder {build.__name__})")


async def test_submit_returns_at_once_and_commits_with_the_next_batch(
    target: AuditTarget,
) -> None:
    log = await target.log()
    for number in range(50):
        log.submit(event(number))  # not a coroutine: nothing to await
    assert log.queued == 50
    seq = await log.append(event(50))
    assert seq == 50  # the submitted ones committed first, in order
    records = [record async for record in log.storage.records()]
    assert [record.details["n"] for record in records] == list(range(51))
    await log.close()
    with pytest.raises(AuditLogClosed):
        log.submit(event(51))
    report = await verify(log.storage, target.key.public_keys())
    assert report.ok, report.summary()
    assert report.verified_size == 51


async def test_a_failed_batch_of_submitted_events_is_counted_and_logged(
    target: AuditTarget, caplog: pytest.LogCaptureFixture
) -> None:
    log = await target.log()
    log.storage = FailingStorage(log.storage)  # type: ignore[assignment]
    log.submit(event(1))
    log.submit(event(2))
    with pytest.raises(ConnectionError):
        await log.append(event(3))
    assert log.lost == 2
    assert "2 submitted events not recorded: database unreachable" in caplog.text


async def test_json_forms_round_trip_and_a_paged_view_verifies(target: AuditTarget) -> None:
    log = await target.log(checkpoint_every=4)
    for number in range(10):
        await log.append(event(number))
    await log.close()
    stored = [record async for record in log.storage.records()]
    exported = [record_to_json(record) for record in stored]
    assert [record_from_json(body) for body in exported] == stored
    checkpoints = await log.storage.checkpoints()
    assert [checkpoint_from_json(checkpoint_to_json(c)) for c in checkpoints] == checkpoints

    fetched: list[int] = []

    def page(start: int) -> list[Any]:
        fetched.append(start)
        return [record_from_json(body) for body in exported if start <= body["seq"] < start + 3]

    paged = PagedLog(page, [checkpoint_from_json(checkpoint_to_json(c)) for c in checkpoints])
    report = await verify(paged, target.key.public_keys())
    assert report.ok, report.summary()
    assert (report.records, report.verified_size) == (10, 10)
    assert fetched == [0, 3, 6, 9, 10]  # page by page, never the whole log at once

    edited = [dict(body) for body in exported]
    edited[4]["decision"] = "deny"
    tampered = PagedLog(lambda start: [record_from_json(b) for b in edited[start:]], checkpoints)
    report = await verify(tampered, target.key.public_keys())
    assert report.first_bad_seq == 4


def test_malformed_json_is_refused_with_where_and_seq() -> None:
    with pytest.raises(ValueError, match="record 7: seq must be a non-negative integer"):
        record_from_json({"seq": "3"}, "record 7")
    with pytest.raises(UnreadableRecord) as unreadable:
        record_from_json({"seq": 3, "time": "t", "actor": "a"})
    assert unreadable.value.seq == 3
    with pytest.raises(ValueError, match="checkpoint 0: size must be a positive integer"):
        checkpoint_from_json(
            {"size": 0, "rootHash": "", "time": "", "kid": "", "signature": ""}, "checkpoint 0"
        )


async def test_a_sqlite_audit_file_verifies_offline_and_shows_edits(tmp_path: Path) -> None:
    target = AuditTarget("sqlite", f"sqlite:///{tmp_path}/audit.db")
    try:
        log = await target.log(checkpoint_every=5)
        for number in range(12):
            await log.append(event(number))
        await log.close()
        offline = SqliteAuditFile(tmp_path / "audit.db", page_size=4)
        report = await verify(offline, target.key.public_keys())
        assert report.ok, report.summary()
        assert report.records == 12
        await offline.close()

        await target.tamper("UPDATE audit_records SET details = 'not json' WHERE seq = 6")
        offline = SqliteAuditFile(tmp_path / "audit.db")
        report = await verify(offline, target.key.public_keys())
        assert report.first_bad_seq == 6
        assert "unreadable row" in report.summary()
        await offline.close()
    finally:
        await target.close_all()


def test_a_file_that_is_not_an_audit_log_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        SqliteAuditFile(tmp_path / "missing.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    with pytest.raises(ValueError, match="not a corral audit log"):
        SqliteAuditFile(other)
    assert asyncio.iscoroutinefunction(SqliteAuditFile.close)
