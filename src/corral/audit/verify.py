"""The reader side: :func:`verify` re-derives everything from the stored rows, and inclusion and
consistency proofs for handing to someone who holds only a signed checkpoint.

verify walks the records once in seq order (O(log n) memory): each record's leaf hash is
recomputed from its fields and compared with the stored one (an edited field), its ``prev_hash``
with the previous record's hash (a broken chain), its seq with the expected one (a deleted or
moved record). At each checkpoint's size the Merkle root is compared with the signed one (a
rewritten stretch whose hashes were all recomputed), every signature is checked against
``public_keys``, and a checkpoint beyond the last record means the log was truncated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from corral.audit.merkle import MerkleAccumulator, consistency_path, inclusion_path
from corral.audit.record import GENESIS_HASH, AuditRecord
from corral.audit.signing import Checkpoint, signature_problem
from corral.audit.storage import AuditStorage, UnreadableRecord


@dataclass(frozen=True)
class Problem:
    """One thing wrong: ``kind`` is one of ``missing``, ``edited``, ``chain``,
    ``root``, ``signature``, ``truncated``; ``seq`` the record, ``checkpoint`` the checkpoint
    size it concerns (either may be None)."""

    kind: str
    message: str
    seq: int | None = None
    checkpoint: int | None = None


@dataclass
class VerifyReport:
    records: int = 0
    checkpoints: int = 0
    verified_size: int = 0
    """Records covered by a good checkpoint (later ones are protected by the chain only)."""
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [problem.seq for problem in self.problems if problem.seq is not None]
        return min(seqs) if seqs else None

    def summary(self) -> str:
        if self.ok:
            return (
                f"ok: {self.records} records, {self.checkpoints} checkpoints, "
                f"{self.verified_size} records under a signed checkpoint"
            )
        return "; ".join(problem.message for problem in self.problems)


async def verify(
    storage: AuditStorage, public_keys: Mapping[str, Ed25519PublicKey]
) -> VerifyReport:
    """Check the whole log; the report lists what is wrong (the first record problem ends the
    record walk, since everything after it differs too)."""
    checkpoints = await storage.checkpoints()
    report = VerifyReport(checkpoints=len(checkpoints))
    trusted: dict[int, Checkpoint] = {}
    for checkpoint in checkpoints:
        why = signature_problem(checkpoint, public_keys)
        if why:
            report.problems.append(
                Problem(
                    "signature",
                    f"checkpoint at size {checkpoint.size}: {why}",
                    checkpoint=checkpoint.size,
                )
            )
        else:
            trusted[checkpoint.size] = checkpoint
    roots_due = {checkpoint.size: checkpoint for checkpoint in checkpoints}
    tree = MerkleAccumulator()
    previous = GENESIS_HASH
    record_problem: Problem | None = None
    try:
        async for record in storage.records():
            report.records += 1
            if record_problem is not None:
                continue
            record_problem = _record_problem(record, tree.size, previous)
            if record_problem is not None:
                continue
            tree.push(record.hash)
            previous = record.hash
            due = roots_due.get(tree.size)
            if due is not None and due.root_hash != tree.root():
                record_problem = Problem(
                    "root",
                    f"checkpoint at size {due.size}: the records do not hash to its root (a "
                    f"record before seq {due.size} was changed and its hashes recomputed)",
                    checkpoint=due.size,
                )
            elif due is not None and due.size in trusted:
                report.verified_size = due.size
    except UnreadableRecord as error:
        if record_problem is None and error.seq != tree.size:
            record_problem = _missing(tree.size, error.seq)
        elif record_problem is None:
            record_problem = Problem("edited", str(error), seq=error.seq)
    if record_problem is not None:
        report.problems.append(record_problem)
    else:
        for checkpoint in checkpoints:
            if checkpoint.size > tree.size:
                report.problems.append(
                    Problem(
                        "truncated",
                        f"checkpoint at size {checkpoint.size} but the log ends after "
                        f"{tree.size} records: records from seq {tree.size} are missing",
                        seq=tree.size,
                        checkpoint=checkpoint.size,
                    )
                )
                break
    return report


def _record_problem(record: AuditRecord, expected: int, previous: bytes) -> Problem | None:
    seq = record.seq
    if seq != expected:  # rows come in seq order with seq unique, so the gap is a deletion
        return _missing(expected, seq)
    if record.computed_hash() != record.hash:
        return Problem(
            "edited", f"record seq {seq}: its fields do not hash to its stored hash", seq=seq
        )
    if record.prev_hash != previous:
        return Problem(
            "chain",
            f"record seq {seq}: prev_hash does not match record {seq - 1}'s hash",
            seq=seq,
        )
    return None


def _missing(expected: int, found: int) -> Problem:
    return Problem(
        "missing", f"record seq {expected} is missing (next stored is {found})", seq=expected
    )


async def inclusion_proof(storage: AuditStorage, seq: int, tree_size: int) -> list[bytes]:
    """The audit path proving record ``seq`` is in the tree of the first ``tree_size`` records
    (check it with :func:`corral.audit.verify_inclusion` against a checkpoint's root)."""
    leaves = await _leaves(storage, tree_size)
    return inclusion_path(leaves, seq)


async def consistency_proof(storage: AuditStorage, old_size: int, new_size: int) -> list[bytes]:
    """The proof that the ``old_size`` tree is a prefix of the ``new_size`` tree (check it with
    :func:`corral.audit.verify_consistency` against two checkpoints' roots)."""
    return consistency_path(await _leaves(storage, new_size), old_size)


async def _leaves(storage: AuditStorage, tree_size: int) -> list[bytes]:
    leaves = await storage.leaf_hashes(0, tree_size)
    if len(leaves) != tree_size:
        raise ValueError(f"audit proof: tree size {tree_size} but the log has {len(leaves)}")
    return leaves
