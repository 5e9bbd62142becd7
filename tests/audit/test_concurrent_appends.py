"""Many appends at once keep seq dense and the chain valid: within one log (group commit puts
them in few transactions) and across two logs writing to the same database (the write lock
makes each batch read the head the previous one left)."""

from __future__ import annotations

import asyncio

import pytest
from audit_target import AuditTarget, event

from corral.audit import AuditLog, verify
from corral.audit.storage import ChainHead


async def test_concurrent_appends_in_one_log(target: AuditTarget) -> None:
    log = await target.log(max_batch=64)
    seqs = await asyncio.gather(*(log.append(event(n)) for n in range(300)))
    assert sorted(seqs) == list(range(300))
    await log.close()
    report = await verify(log.storage, target.key.public_keys())
    assert report.ok, report.summary()
    assert report.records == 300
    assert report.verified_size == 300


async def test_group_commit_batches_waiting_appends(target: AuditTarget) -> None:
    log = await target.log()
    storage = log.storage
    batch_sizes: list[int] = []
    original = storage.append

    async def counting_append(build: object) -> object:
        def counted(head: ChainHead) -> object:
            built = build(head)  # type: ignore[operator]
            batch_sizes.append(len(built))
            return built

        return await original(counted)

    storage.append = counting_append
    await asyncio.gather(*(log.append(event(n)) for n in range(200)))
    assert sum(batch_sizes) == 200
    assert len(batch_sizes) < 200


async def test_two_logs_on_one_database_share_one_chain(target: AuditTarget) -> None:
    first = await target.log(max_batch=16)
    second = await target.log(max_batch=16)
    seqs = await asyncio.gather(
        *(first.append(event(n)) for n in range(100)),
        *(second.append(event(n, action="deny", decision="deny")) for n in range(100)),
    )
    assert sorted(seqs) == list(range(200))
    await first.close()
    await second.close()
    report = await verify(first.storage, target.key.public_keys())
    assert report.ok, report.summary()
    assert report.records == 200


async def test_a_failed_batch_fails_its_appends_and_the_log_goes_on(target: AuditTarget) -> None:
    log: AuditLog = await target.log()
    storage = log.storage
    original = storage.append
    calls = 0

    async def failing_once(build: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database went away")
        return await original(build)

    storage.append = failing_once
    with pytest.raises(ConnectionError, match="database went away"):
        await log.append(event(0))
    assert await log.append(event(1)) == 0
    await log.close()
    report = await verify(storage, target.key.public_keys())
    assert report.ok, report.summary()
