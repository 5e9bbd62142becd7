"""The audit log outside its database: records and checkpoints as JSON (what the API serves and
``corral audit`` reads back), stored rows decoded into records, and read-only
:class:`~corral.audit.AuditStorage` views that :func:`~corral.audit.verify` can walk — one over
pages fetched from a server, one over a SQLite audit file opened read-only.

Everything here is lossless: a record read back from JSON or a row has exactly the fields it was
hashed over, so the verifier recomputes the same leaf hash. Anything that does not decode is an
:class:`~corral.audit.UnreadableRecord` naming the seq, which the verifier reports as an edit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from corral.audit.record import AuditRecord
from corral.audit.signing import Checkpoint
from corral.audit.storage import BuildRecords, ChainHead, UnreadableRecord

RECORD_COLUMNS = (
    "seq, time, actor, action, resource, decision, policy, cost, details, prev_hash, hash"
)
"""The ``audit_records`` columns in the order :func:`record_from_row` reads them."""
CHECKPOINT_COLUMNS = "size, root_hash, time, kid, signature"


def record_to_json(record: AuditRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "time": record.time,
        "actor": record.actor,
        "action": record.action,
        "resource": record.resource,
        "decision": record.decision,
        "policies": list(record.policies),
        "cost": record.cost,
        "details": record.details,
        "prevHash": record.prev_hash.hex(),
        "hash": record.hash.hex(),
    }


def record_from_json(body: Any, position: str = "record") -> AuditRecord:
    """The record a :func:`record_to_json` body describes; UnreadableRecord (with the seq when
    there is one) or ValueError for anything else."""
    if not isinstance(body, Mapping):
        raise ValueError(f"{position}: expected a JSON object")
    seq = body.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ValueError(f"{position}: seq must be a non-negative integer, got {seq!r}")
    try:
        strings = [body[name] for name in ("time", "actor", "action", "resource", "decision")]
        if not all(isinstance(value, str) for value in strings):
            raise TypeError("time, actor, action, resource and decision must be strings")
        policies = body["policies"]
        if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
            raise TypeError("policies must be a list of strings")
        cost = body["cost"]
        if isinstance(cost, bool) or not isinstance(cost, int | float):
            raise TypeError("cost must be a number")
        details = body["details"]
        if not isinstance(details, dict):
            raise TypeError("details must be an object")
        return AuditRecord(
            seq=seq,
            time=strings[0],
            actor=strings[1],
            action=strings[2],
            resource=strings[3],
            decision=strings[4],
            policies=tuple(policies),
            cost=float(cost),
            details=details,
            prev_hash=bytes.fromhex(body["prevHash"]),
            hash=bytes.fromhex(body["hash"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise UnreadableRecord(seq, f"unreadable record ({error})") from None


def checkpoint_to_json(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "size": checkpoint.size,
        "rootHash": checkpoint.root_hash.hex(),
        "time": checkpoint.time,
        "kid": checkpoint.kid,
        "signature": checkpoint.signature.hex(),
    }


def checkpoint_from_json(body: Any, position: str = "checkpoint") -> Checkpoint:
    if not isinstance(body, Mapping):
        raise ValueError(f"{position}: expected a JSON object")
    try:
        size, time, kid = body["size"], body["time"], body["kid"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        if not isinstance(time, str) or not isinstance(kid, str):
            raise ValueError("time and kid must be strings")
        return Checkpoint(
            size, bytes.fromhex(body["rootHash"]), time, kid, bytes.fromhex(body["signature"])
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{position}: {error}") from None


def record_from_row(row: Sequence[Any]) -> AuditRecord:
    """A stored ``audit_records`` row (:data:`RECORD_COLUMNS`) as a record."""
    seq, time, actor, action, resource, decision, policy, cost, details, prev_hash, hash_ = row
    try:
        return AuditRecord(
            seq=seq,
            time=time,
            actor=actor,
            action=action,
            resource=resource,
            decision=decision,
            policies=tuple(orjson.loads(policy)),
            cost=cost,
            details=orjson.loads(details),
            prev_hash=bytes(prev_hash),
            hash=bytes(hash_),
        )
    except (ValueError, TypeError) as error:
        # Only a change made behind the log's back produces such a row (SQLite accepts any
        # type in any column): the verifier reports it as an edited record.
        raise UnreadableRecord(seq, f"unreadable row ({error})") from None


def checkpoint_from_row(row: Sequence[Any]) -> Checkpoint:
    return Checkpoint(row[0], bytes(row[1]), row[2], row[3], bytes(row[4]))


FetchPage = Callable[[int], Sequence[AuditRecord]]
"""Records from a seq on, in seq order; an empty page ends the log. A page stops before an
unreadable row, and a page that would start with one raises UnreadableRecord, so the verifier
sees every good record before it."""


class _ReadOnly:
    async def append(self, build: BuildRecords) -> Sequence[AuditRecord]:  # noqa: ARG002
        raise RuntimeError("this audit log view is read-only")

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:  # noqa: ARG002
        raise RuntimeError("this audit log view is read-only")


class PagedLog(_ReadOnly):
    """A read-only log over ``fetch_page`` (e.g. ``GET /corral/v1/audit/records?from=``) and
    a list of checkpoints; pages are fetched as the verifier walks, so memory stays small."""

    def __init__(self, fetch_page: FetchPage, checkpoints: Sequence[Checkpoint]) -> None:
        self._fetch_page = fetch_page
        self._checkpoints = sorted(checkpoints, key=lambda checkpoint: checkpoint.size)

    async def records(self, start: int = 0, stop: int | None = None) -> AsyncIterator[AuditRecord]:
        while stop is None or start < stop:
            page = self._fetch_page(start)
            if not page:
                return
            for record in page:
                if stop is not None and record.seq >= stop:
                    return
                yield record
            start = page[-1].seq + 1

    async def head(self) -> ChainHead:
        last: AuditRecord | None = None
        async for record in self.records():
            last = record
        return ChainHead(0, bytes(32)) if last is None else ChainHead(last.seq + 1, last.hash)

    async def leaf_hashes(self, start: int, stop: int) -> list[bytes]:
        return [record.hash async for record in self.records(start, stop)]

    async def checkpoints(self) -> list[Checkpoint]:
        return list(self._checkpoints)

    async def last_checkpoint(self) -> Checkpoint | None:
        return self._checkpoints[-1] if self._checkpoints else None

    async def close(self) -> None:
        return None


class SqliteAuditFile(PagedLog):
    """A SQLite audit file (``STATE_DIR/audit.db``) opened read-only, for offline checks
    (``corral audit verify --db``); it never writes, so it is safe beside a running server."""

    def __init__(self, path: str | Path, *, page_size: int = 2000) -> None:
        location = Path(path)
        if not location.is_file():
            raise ValueError(f"audit file {location}: no such file")
        try:
            self._connection = sqlite3.connect(f"{location.resolve().as_uri()}?mode=ro", uri=True)
            rows = self._connection.execute(
                f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY size"
            ).fetchall()
        except sqlite3.Error as error:
            raise ValueError(f"audit file {location}: not a corral audit log ({error})") from None
        self._page_size = page_size
        super().__init__(self._page, [checkpoint_from_row(row) for row in rows])

    def _page(self, start: int) -> list[AuditRecord]:
        rows = self._connection.execute(
            f"SELECT {RECORD_COLUMNS} FROM audit_records WHERE seq >= ? ORDER BY seq LIMIT ?",
            (start, self._page_size),
        ).fetchall()
        records: list[AuditRecord] = []
        for row in rows:
            try:
                records.append(record_from_row(row))
            except UnreadableRecord:
                if records:  # hand over the good ones; the next page starts at the bad row
                    return records
                raise
        return records

    async def close(self) -> None:
        self._connection.close()
