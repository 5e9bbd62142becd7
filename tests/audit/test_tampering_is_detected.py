"""verify() catches every change made straight in the database, names the first bad seq (or the
checkpoint) and says what is wrong: an edited field, a deleted row, swapped seqs, a stretch
rewritten with recomputed hashes, an edited or forged checkpoint, truncation after a checkpoint.

Each test writes records 0..19 with signed checkpoints at sizes 10 and 20, then tampers.
"""

from __future__ import annotations

import orjson
import pytest
from audit_target import AuditTarget, event

from corral.audit import AuditLog, SigningKey, VerifyReport, verify
from corral.audit.record import seal_batch


@pytest.fixture
async def written(target: AuditTarget) -> AuditLog:
    log = await target.log()
    for n in range(10):
        await log.append(event(n))
    await log.checkpoint()
    for n in range(10, 20):
        await log.append(event(n))
    await log.close()
    return log


async def check(target: AuditTarget, log: AuditLog) -> VerifyReport:
    report = await verify(log.storage, target.key.public_keys())
    assert not report.ok
    return report


async def test_the_untouched_log_verifies(target: AuditTarget, written: AuditLog) -> None:
    report = await verify(written.storage, target.key.public_keys())
    assert report.ok, report.summary()


@pytest.mark.parametrize(
    ("assignment", "seq"),
    [
        ("actor = 'spiffe://corral/ns/default/agent/mallory'", 13),
        ("decision = 'deny'", 0),
        ("policy = '[\"allow-all\"]'", 19),
        ("cost = 0", 7),
        ("details = '{\"n\":4}'", 4),
        ("time = '2020-01-01T00:00:00.000000Z'", 11),
    ],
)
async def test_an_edited_field_names_its_record(
    target: AuditTarget, written: AuditLog, assignment: str, seq: int
) -> None:
    await target.tamper(f"UPDATE audit_records SET {assignment} WHERE seq = {seq}")
    report = await check(target, written)
    assert report.first_bad_seq == seq
    assert [problem.kind for problem in report.problems] == ["edited"]
    assert f"record seq {seq}" in report.summary()


@pytest.mark.parametrize(
    ("assignment", "seq"),
    [("policy = 'not json'", 6), ("details = '{\"n\":'", 18)],
)
async def test_an_unreadable_field_names_its_record(
    target: AuditTarget, written: AuditLog, assignment: str, seq: int
) -> None:
    await target.tamper(f"UPDATE audit_records SET {assignment} WHERE seq = {seq}")
    report = await check(target, written)
    assert report.first_bad_seq == seq
    assert [problem.kind for problem in report.problems] == ["edited"]
    assert f"record seq {seq}: unreadable row" in report.summary()


async def test_a_deleted_record_is_missing(target: AuditTarget, written: AuditLog) -> None:
    await target.tamper("DELETE FROM audit_records WHERE seq = 7")
    report = await check(target, written)
    assert report.first_bad_seq == 7
    assert report.problems[0].kind == "missing"


async def test_swapped_records_break_at_the_first(target: AuditTarget, written: AuditLog) -> None:
    await target.tamper(
        "UPDATE audit_records SET seq = -1 WHERE seq = 5",
        "UPDATE audit_records SET seq = 5 WHERE seq = 9",
        "UPDATE audit_records SET seq = 9 WHERE seq = -1",
    )
    report = await check(target, written)
    assert report.first_bad_seq == 5
    assert report.problems[0].kind == "edited"


async def test_a_broken_link_is_a_chain_problem(target: AuditTarget, written: AuditLog) -> None:
    # Replace record 12 by a correctly hashed record that links to the wrong predecessor.
    records = [record async for record in written.storage.records(0, 20)]
    forged = seal_batch([(event(99), records[12].time)], next_seq=12, last_hash=records[3].hash)[0]
    await target.tamper(
        f'UPDATE audit_records SET details = \'{{"n":99,"tokens":{{"in":99,"out":198}}}}\', '
        f"cost = {forged.cost}, actor = '{forged.actor}', "
        f"prev_hash = {target.blob(forged.prev_hash)}, hash = {target.blob(forged.hash)} "
        "WHERE seq = 12"
    )
    report = await check(target, written)
    assert report.first_bad_seq == 12
    assert report.problems[0].kind == "chain"


async def test_a_rewritten_stretch_fails_the_checkpoint_root(
    target: AuditTarget, written: AuditLog
) -> None:
    # The attacker edits record 15 and recomputes every hash after it: the chain is consistent
    # again, only the signed root of checkpoint 20 can tell.
    records = [record async for record in written.storage.records(0, 20)]
    stamped = [(event(n + 1000 if n == 15 else n), records[n].time) for n in range(15, 20)]
    rewritten = seal_batch(stamped, next_seq=15, last_hash=records[14].hash)
    statements = ["DELETE FROM audit_records WHERE seq >= 15"]
    for record in rewritten:
        statements.append(
            "INSERT INTO audit_records (seq, time, actor, action, resource, decision, policy, "
            "cost, details, prev_hash, hash) VALUES ("
            f"{record.seq}, '{record.time}', '{record.actor}', '{record.action}', "
            f"'{record.resource}', '{record.decision}', '[\"allow-team\"]', {record.cost}, "
            f"'{_details_json(record.details)}', {target.blob(record.prev_hash)}, "
            f"{target.blob(record.hash)})"
        )
    await target.tamper(*statements)
    report = await check(target, written)
    assert [(problem.kind, problem.checkpoint) for problem in report.problems] == [("root", 20)]
    assert report.verified_size == 10


def _details_json(details: dict[str, object]) -> str:
    return orjson.dumps(details, option=orjson.OPT_SORT_KEYS).decode()


async def test_an_edited_checkpoint_root_fails_its_signature(
    target: AuditTarget, written: AuditLog
) -> None:
    await target.tamper(
        f"UPDATE audit_checkpoints SET root_hash = {target.blob(bytes(32))} WHERE size = 10"
    )
    report = await check(target, written)
    kinds = {(problem.kind, problem.checkpoint) for problem in report.problems}
    assert ("signature", 10) in kinds
    assert ("root", 10) in kinds


async def test_a_forged_signature_is_refused(target: AuditTarget, written: AuditLog) -> None:
    await target.tamper(
        f"UPDATE audit_checkpoints SET signature = {target.blob(bytes(64))} WHERE size = 20"
    )
    report = await check(target, written)
    assert [(problem.kind, problem.checkpoint) for problem in report.problems] == [
        ("signature", 20)
    ]
    assert "signature does not verify" in report.summary()
    assert report.verified_size == 10


async def test_a_checkpoint_signed_by_another_key_is_refused(
    target: AuditTarget, written: AuditLog
) -> None:
    checkpoints = await written.storage.checkpoints()
    forged = SigningKey.generate().sign(20, checkpoints[1].root_hash, checkpoints[1].time)
    await target.tamper(
        f"UPDATE audit_checkpoints SET kid = '{forged.kid}', "
        f"signature = {target.blob(forged.signature)} WHERE size = 20"
    )
    report = await check(target, written)
    assert [(problem.kind, problem.checkpoint) for problem in report.problems] == [
        ("signature", 20)
    ]
    assert f"unknown key '{forged.kid}'" in report.summary()


async def test_truncation_after_a_checkpoint_is_caught(
    target: AuditTarget, written: AuditLog
) -> None:
    await target.tamper("DELETE FROM audit_records WHERE seq >= 17")
    report = await check(target, written)
    assert report.first_bad_seq == 17
    assert [(problem.kind, problem.checkpoint) for problem in report.problems] == [
        ("truncated", 20)
    ]


async def test_a_deletion_before_an_unreadable_row_is_reported_first(
    target: AuditTarget, written: AuditLog
) -> None:
    await target.tamper(
        "DELETE FROM audit_records WHERE seq = 3",
        "UPDATE audit_records SET policy = 'not json' WHERE seq = 4",
    )
    report = await check(target, written)
    assert report.first_bad_seq == 3
    assert [problem.kind for problem in report.problems] == ["missing"]
