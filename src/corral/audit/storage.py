"""What the audit log needs from a database (:class:`AuditStorage`); ``corral.store`` implements
it for SQLite and PostgreSQL (``open_audit_storage``).

Storage never updates or deletes: records and checkpoints are only inserted. ``append`` runs the
caller's ``build`` inside the write transaction, after taking the write lock and reading the
head, so several processes appending to one database still form one dense chain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from corral.audit.record import GENESIS_HASH, AuditRecord
from corral.audit.signing import Checkpoint


@dataclass(frozen=True)
class ChainHead:
    """Where the log ends: the next seq to use and the last record's leaf hash."""

    size: int
    last_hash: bytes


EMPTY_HEAD = ChainHead(0, GENESIS_HASH)

BuildRecords = Callable[[ChainHead], Sequence[AuditRecord]]


class UnreadableRecord(ValueError):
    """A stored row that cannot be read back as a record (a column changed to something that
    is not JSON, or not bytes): ``records()`` raises it and stops there."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"record seq {seq}: {reason}")
        self.seq = seq
        self.reason = reason


class AuditStorage(Protocol):
    async def append(self, build: BuildRecords) -> Sequence[AuditRecord]:
        """Insert what ``build(head)`` returns in one transaction; return it once committed."""
        ...

    async def head(self) -> ChainHead: ...

    def records(self, start: int = 0, stop: int | None = None) -> AsyncIterator[AuditRecord]:
        """Stored rows with ``start <= seq < stop`` in seq order, as stored (gaps and all)."""
        ...

    async def leaf_hashes(self, start: int, stop: int) -> list[bytes]:
        """The stored ``hash`` column for ``start <= seq < stop`` in seq order."""
        ...

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Insert ``checkpoint``; one for the same size already there is kept as it is."""
        ...

    async def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, smallest size first."""
        ...

    async def last_checkpoint(self) -> Checkpoint | None:
        """The checkpoint with the largest size, or None before the first."""
        ...

    async def close(self) -> None: ...
