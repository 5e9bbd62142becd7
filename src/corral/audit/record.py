"""Audit records: what callers hand in (:class:`AuditEvent`), what the log stores
(:class:`AuditRecord`), and the one canonical byte form both hashes are taken over.

A record's bytes are its fields as JSON with sorted keys (orjson), hashes as lowercase hex. The
leaf hash is RFC 6962's ``SHA-256(0x00 || bytes)``; because the bytes include ``seq`` and
``prev_hash`` (the previous record's leaf hash), editing, deleting or reordering any record
changes every hash after it, even between checkpoints.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

HASH_SIZE = 32
GENESIS_HASH = bytes(HASH_SIZE)
"""The ``prev_hash`` of record 0: there is nothing before it."""


@dataclass(frozen=True)
class AuditEvent:
    """One decision to record: who (``actor``) did what (``action``) to which ``resource``,
    the ``decision``, the ``policies`` that decided it, its ``cost`` and free-form ``details``."""

    actor: str
    action: str
    resource: str
    decision: str
    policies: Sequence[str] = ()
    cost: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Two events per gateway request: the common shape (plain str fields, a tuple of
        # policy names, a float cost, plain-scalar details) is checked without generators or
        # getattr; anything else takes the thorough path below, which says what is wrong.
        actor, action, resource, decision = self.actor, self.action, self.resource, self.decision
        policies, cost, details = self.policies, self.cost, self.details
        if (
            type(actor) is str
            and type(action) is str
            and type(resource) is str
            and type(decision) is str
            and actor
            and action
            and resource
            and decision
            and type(policies) is tuple
            and type(cost) is float
            and cost - cost == 0.0  # finite: inf - inf and nan - nan are nan
            and type(details) is dict
        ):
            for policy in policies:
                if type(policy) is not str or not policy:
                    break
            else:
                for key, value in details.items():
                    if type(key) is not str or not _plain_scalar(value):
                        break
                else:
                    object.__setattr__(self, "details", dict(details))
                    return
        self._validate()

    def _validate(self) -> None:
        for name in ("actor", "action", "resource", "decision"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"audit event {name}: expected a non-empty string, got {value!r}")
        if isinstance(self.policies, str) or not all(
            isinstance(policy, str) and policy for policy in self.policies
        ):
            raise ValueError(
                f"audit event policies: expected a list of non-empty names, got {self.policies!r}"
            )
        object.__setattr__(self, "policies", tuple(self.policies))
        if isinstance(self.cost, bool) or not isinstance(self.cost, int | float):
            raise ValueError(f"audit event cost: expected a number, got {self.cost!r}")
        if not math.isfinite(self.cost):
            raise ValueError(f"audit event cost: must be finite, got {self.cost!r}")
        object.__setattr__(self, "cost", float(self.cost))
        object.__setattr__(self, "details", canonical_details(self.details))


def canonical_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """``details`` as a plain dict that survives a JSON round trip unchanged, or ValueError."""
    if not isinstance(details, Mapping):
        raise ValueError(f"audit event details: expected a mapping, got {type(details).__name__}")
    if all(type(key) is str and _plain_scalar(value) for key, value in details.items()):
        return dict(details)  # what the gateway records per request: no round trip needed
    try:
        encoded = orjson.dumps(dict(details), option=orjson.OPT_SORT_KEYS)
    except TypeError as error:
        raise ValueError(f"audit event details: not JSON-serialisable ({error})") from None
    decoded: dict[str, Any] = orjson.loads(encoded)
    # orjson writes NaN/Infinity as null and tuples as lists: such details would hash
    # differently once read back, so they are refused rather than silently changed.
    if decoded != details:
        raise ValueError(
            "audit event details: must be JSON values that read back unchanged "
            "(no NaN/Infinity, tuples, or non-string keys)"
        )
    return decoded


_JSON_INTEGERS = range(-(2**63), 2**64)
"""The integers orjson writes; others it refuses."""


def _plain_scalar(value: Any) -> bool:
    """A value a JSON round trip gives back unchanged, for sure: an ASCII string (others may
    hold lone surrogates orjson refuses), None, a bool, an integer orjson can write, or a
    finite float."""
    kind = type(value)
    if kind is str:
        return bool(value.isascii())
    if value is None or kind is bool:
        return True
    if kind is int:
        return value in _JSON_INTEGERS
    return kind is float and math.isfinite(value)


@dataclass(frozen=True)
class AuditRecord:
    """A stored record: the event plus its place in the log and its hashes."""

    seq: int
    time: str
    actor: str
    action: str
    resource: str
    decision: str
    policies: tuple[str, ...]
    cost: float
    details: dict[str, Any]
    prev_hash: bytes
    hash: bytes

    def canonical_bytes(self) -> bytes:
        return record_bytes(
            seq=self.seq,
            time=self.time,
            actor=self.actor,
            action=self.action,
            resource=self.resource,
            decision=self.decision,
            policies=self.policies,
            cost=self.cost,
            details=self.details,
            prev_hash=self.prev_hash,
        )

    def computed_hash(self) -> bytes:
        """The leaf hash of the fields as they are now (compare with ``hash`` to spot edits)."""
        return leaf_hash(self.canonical_bytes())


def record_bytes(
    *,
    seq: int,
    time: str,
    actor: str,
    action: str,
    resource: str,
    decision: str,
    policies: Sequence[str],
    cost: float,
    details: Mapping[str, Any],
    prev_hash: bytes,
) -> bytes:
    """The canonical encoding the leaf hash covers (the on-disk format's source of truth)."""
    return orjson.dumps(
        {
            "seq": seq,
            "time": time,
            "actor": actor,
            "action": action,
            "resource": resource,
            "decision": decision,
            "policy": list(policies),
            "cost": cost,
            "details": details,
            "prev_hash": prev_hash.hex(),
        },
        option=orjson.OPT_SORT_KEYS,
    )


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def seal(event: AuditEvent, *, seq: int, time: str, prev_hash: bytes) -> AuditRecord:
    """The record ``event`` becomes at position ``seq`` after ``prev_hash``."""
    fields: dict[str, Any] = {
        "seq": seq,
        "time": time,
        "actor": event.actor,
        "action": event.action,
        "resource": event.resource,
        "decision": event.decision,
        "policies": tuple(event.policies),
        "cost": event.cost,
        "details": dict(event.details),
        "prev_hash": prev_hash,
    }
    return AuditRecord(**fields, hash=leaf_hash(record_bytes(**fields)))


def seal_batch(
    stamped: Sequence[tuple[AuditEvent, str]], *, next_seq: int, last_hash: bytes
) -> list[AuditRecord]:
    """Chain ``(event, time)`` pairs onto a log whose next seq is ``next_seq`` and whose last
    leaf hash is ``last_hash``."""
    records = []
    for offset, (event, time) in enumerate(stamped):
        record = seal(event, seq=next_seq + offset, time=time, prev_hash=last_hash)
        records.append(record)
        last_hash = record.hash
    return records
