"""The tamper-evident audit log: hash-chained records in an RFC 6962 Merkle tree with signed
checkpoints (DESIGN.md §4).

Writers open an :class:`AuditLog` over an :class:`AuditStorage` (``corral.store`` has SQLite
and PostgreSQL ones) and ``await log.append(AuditEvent(...))``; auditors run :func:`verify`
with the public keys and get a :class:`VerifyReport` naming the first bad seq.
"""

from corral.audit.log import AuditLog, AuditLogClosed
from corral.audit.merkle import verify_consistency, verify_inclusion
from corral.audit.record import AuditEvent, AuditRecord
from corral.audit.signing import Checkpoint, SigningKey, load_public_key
from corral.audit.storage import AuditStorage, BuildRecords, ChainHead, UnreadableRecord
from corral.audit.verify import Problem, VerifyReport, consistency_proof, inclusion_proof, verify

__all__ = [
    "AuditEvent",
    "AuditLog",
    "AuditLogClosed",
    "AuditRecord",
    "AuditStorage",
    "BuildRecords",
    "ChainHead",
    "Checkpoint",
    "Problem",
    "SigningKey",
    "UnreadableRecord",
    "VerifyReport",
    "consistency_proof",
    "inclusion_proof",
    "load_public_key",
    "verify",
    "verify_consistency",
    "verify_inclusion",
]
