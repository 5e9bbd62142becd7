"""An untouched log verifies: appends get dense seqs, records read back as written, checkpoints
are signed on demand, every N records and on close, and a reopened log continues the chain."""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg
import pytest
from audit_target import AuditTarget, event

from corral.audit import (
    AuditEvent,
    AuditLog,
    AuditLogClosed,
    SigningKey,
    load_public_key,
    verify,
)
from corral.store.audit_storage import open_audit_storage


async def test_appends_get_dense_seqs_and_read_back_unchanged(target: AuditTarget) -> None:
    log = await target.log()
    seqs = [await log.append(event(n)) for n in range(5)]
    assert seqs == [0, 1, 2, 3, 4]
    records = [record async for record in log.storage.records()]
    assert [record.seq for record in records] == seqs
    third = records[3]
    assert (third.actor, third.action, third.decision) == (event(3).actor, "invoke", "allow")
    assert third.policies == ("allow-team",)
    assert third.cost == 0.75
    assert third.details == {"n": 3, "tokens": {"in": 3, "out": 6}}
    assert third.prev_hash == records[2].hash
    assert all(record.computed_hash() == record.hash for record in records)


async def test_a_clean_log_verifies_with_every_checkpoint(target: AuditTarget) -> None:
    log = await target.log()
    for n in range(7):
        await log.append(event(n))
    first = await log.checkpoint()
    for n in range(7, 12):
        await log.append(event(n))
    await log.close()
    assert first is not None
    assert first.size == 7
    checkpoints = await log.storage.checkpoints()
    assert [checkpoint.size for checkpoint in checkpoints] == [7, 12]
    report = await verify(log.storage, target.key.public_keys())
    assert report.ok, report.summary()
    assert (report.records, report.checkpoints, report.verified_size) == (12, 2, 12)
    assert report.first_bad_seq is None


async def test_checkpoints_follow_record_count(target: AuditTarget) -> None:
    log = await target.log(checkpoint_every=5)
    await asyncio.gather(*(log.append(event(n)) for n in range(23)))
    for _ in range(200):  # the checkpointer runs beside the writer; give it its turn
        checkpoints = await log.storage.checkpoints()
        if checkpoints and checkpoints[-1].size >= 20:
            break
        await asyncio.sleep(0.01)
    assert checkpoints
    assert checkpoints[-1].size >= 20
    report = await verify(log.storage, target.key.public_keys())
    assert report.ok, report.summary()


async def test_checkpoints_follow_time(target: AuditTarget) -> None:
    log = await target.log(checkpoint_interval=0.05)
    await log.append(event(0))
    for _ in range(200):
        if await log.storage.checkpoints():
            break
        await asyncio.sleep(0.01)
    assert [checkpoint.size for checkpoint in await log.storage.checkpoints()] == [1]


async def test_checkpoint_of_an_empty_log_is_none_and_repeats_are_reused(
    target: AuditTarget,
) -> None:
    log = await target.log()
    assert await log.checkpoint() is None
    await log.append(event(0))
    first = await log.checkpoint()
    assert first is not None
    assert await log.checkpoint() == first
    assert len(await log.storage.checkpoints()) == 1


async def test_a_reopened_log_continues_the_chain(target: AuditTarget) -> None:
    first = await target.log()
    for n in range(3):
        await first.append(event(n))
    await first.close()
    second = await target.log()
    assert await second.append(event(3)) == 3
    await second.close()
    report = await verify(second.storage, target.key.public_keys())
    assert report.ok, report.summary()
    assert [checkpoint.size for checkpoint in await second.storage.checkpoints()] == [3, 4]


async def test_append_after_close_is_refused(target: AuditTarget) -> None:
    log = await target.log()
    await log.close()
    with pytest.raises(AuditLogClosed):
        await log.append(event(0))


async def test_signing_key_persists_with_owner_only_permissions(tmp_path: object) -> None:
    from pathlib import Path

    directory = Path(str(tmp_path)) / "keys"
    key = SigningKey.load_or_create(directory)
    assert (directory / "audit-signing.key").stat().st_mode & 0o777 == 0o600
    assert SigningKey.load_or_create(directory).kid == key.kid
    (directory / "audit-signing.key").write_text("not a key")
    with pytest.raises(ValueError, match=r"audit-signing\.key: not a PEM private key"):
        SigningKey.load_or_create(directory)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"actor": ""}, "actor: expected a non-empty string"),
        ({"policies": "allow-team"}, "policies: expected a list"),
        ({"cost": float("nan")}, "cost: must be finite"),
        ({"cost": "1"}, "cost: expected a number"),
        ({"details": {"x": float("inf")}}, "details: must be JSON values"),
        ({"details": {"x": object()}}, "details: not JSON-serialisable"),
        # The same refusals for events of the gateway's own shape (tuple, float, plain dict):
        ({"policies": ("ok", ""), "cost": 1.0}, "policies: expected a list"),
        ({"policies": ("ok",), "cost": float("-inf")}, "cost: must be finite"),
        ({"policies": ("ok",), "cost": 1.0, "details": {1: "x"}}, "details: not JSON-ser"),
        ({"policies": ("ok",), "decision": "", "cost": 1.0}, "decision: expected a non-empty"),
    ],
)
def test_bad_events_are_refused_saying_which_field(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "actor": "u",
        "action": "invoke",
        "resource": "r",
        "decision": "allow",
    }
    with pytest.raises(ValueError, match=message):
        AuditEvent(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_records SET actor = 'mallory' WHERE seq = 0",
        "DELETE FROM audit_records WHERE seq = 1",
        "UPDATE audit_checkpoints SET root_hash = hash_of_nothing",
        "DELETE FROM audit_checkpoints",
    ],
)
async def test_the_database_refuses_changes_to_the_log(target: AuditTarget, statement: str) -> None:
    log = await target.log()
    await log.append(event(0))
    await log.append(event(1))
    await log.close()
    blank = "X'00'" if target.backend == "sqlite" else "'\\x00'::bytea"
    with pytest.raises((sqlite3.IntegrityError, asyncpg.RaiseError), match="append-only"):
        await target.run_sql(statement.replace("hash_of_nothing", blank))
    report = await verify(log.storage, target.key.public_keys())
    assert report.ok, report.summary()


async def test_a_verifier_with_only_the_public_pem_checks_the_log(target: AuditTarget) -> None:
    log = await target.log()
    await log.append(event(0))
    await log.close()
    kid, public_key = load_public_key(target.key.public_pem())
    assert kid == target.key.kid
    report = await verify(log.storage, {kid: public_key})
    assert report.ok, report.summary()
    stranger = SigningKey.generate()
    report = await verify(log.storage, stranger.public_keys())
    assert [(problem.kind, problem.checkpoint) for problem in report.problems] == [("signature", 1)]


def test_a_public_key_that_is_not_pem_is_refused() -> None:
    with pytest.raises(ValueError, match="audit public key: not a PEM public key"):
        load_public_key(b"ssh-ed25519 AAAA")


@pytest.mark.parametrize(
    "options",
    [{"checkpoint_every": 0}, {"max_batch": 0}, {"checkpoint_interval": 0.0}],
)
async def test_bad_log_options_are_refused(target: AuditTarget, options: dict[str, float]) -> None:
    storage = await target.storage()
    with pytest.raises(ValueError, match="audit log: checkpoint_every and max_batch"):
        await AuditLog.open(storage, target.key, **options)  # type: ignore[arg-type]


async def test_an_unknown_storage_url_is_refused() -> None:
    with pytest.raises(ValueError, match=r"use sqlite:///path\.db or postgresql://"):
        await open_audit_storage("mysql://db")


def test_details_that_would_not_read_back_unchanged_are_refused_plain_ones_kept() -> None:
    kept = AuditEvent("a", "b", "c", "allow", details={"n": 2**63, "f": 0.1, "s": "é", "t": True})
    assert kept.details == {"n": 2**63, "f": 0.1, "s": "é", "t": True}
    for bad in ({"x": float("nan")}, {"x": (1, 2)}, {"x": 2**64}, {"x": "\ud800"}):
        with pytest.raises(ValueError, match="audit event details"):
            AuditEvent("a", "b", "c", "allow", details=bad)
