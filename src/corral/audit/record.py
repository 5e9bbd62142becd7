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
                plain = _plain_copy(details)
                if plain is not None:
                    object.__setattr__(self, "details", plain)
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
    plain = _plain_copy(details)
    if plain is not None:
        return plain  # what the gateway records per request: no round trip needed
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


_PLAIN_DEPTH = 4
"""How deep ``_plain_copy`` looks into nested objects and lists before leaving a value to the
JSON round trip (the gateway's request record nests two levels: its folded budget events)."""


def _plain_copy(details: Mapping[str, Any], depth: int = 0) -> dict[str, Any] | None:
    """A copy of ``details`` (nested objects and lists copied too) when every value is for sure
    unchanged by a JSON round trip: plain scalars (see ``_plain_scalar``, whose tests are
    inlined here: this runs for every request's record), and objects with string keys and
    lists made of the same; None otherwise (the caller takes the thorough path). Copying as it
    checks, the record never shares a mutable value with its caller, as after a round trip."""
    copy: dict[str, Any] = {}
    for key, value in details.items():
        if type(key) is not str:
            return None
        kind = type(value)
        if kind is str:
            if not value.isascii():
                return None
        elif kind is float:
            if value - value != 0.0:  # inf - inf and nan - nan are nan
                return None
        elif kind is int:
            if value not in _JSON_INTEGERS:
                return None
        elif value is not None and kind is not bool:
            value = _plain_nested(value, depth)
            if value is None:
                return None
        copy[key] = value
    return copy


def _plain_nested(value: Any, depth: int) -> Any:
    # None means "not plain"; a plain None value is a scalar, handled by the caller.
    if depth >= _PLAIN_DEPTH:
        return None
    kind = type(value)
    if kind is dict:
        return _plain_copy(value, depth + 1)
    if kind is list:
        items: list[Any] = []
        for item in value:
            if not _plain_scalar(item):
                item = _plain_nested(item, depth + 1)
                if item is None:
                    return None
            items.append(item)
        return items
    return None


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
    columns: tuple[str, str] | None = field(default=None, compare=False, repr=False)
    """The policy and details as the storage's JSON columns, when ``seal`` made the record
    (encoded once with its canonical bytes); None otherwise, and storage encodes them."""

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
    details = dict(event.details)
    policies = tuple(event.policies)
    details_json = orjson.dumps(details, option=orjson.OPT_SORT_KEYS)
    policy_json = orjson.dumps(policies)
    # Exactly ``record_bytes``' encoding (a test holds them equal), built with the top-level
    # keys already in sorted order and the sorted details and policies as fragments encoded
    # once, so the storage's columns reuse them: the writer thread does this for every record.
    data = orjson.dumps(
        {
            "action": event.action,
            "actor": event.actor,
            "cost": event.cost,
            "decision": event.decision,
            "details": orjson.Fragment(details_json),
            "policy": orjson.Fragment(policy_json),
            "prev_hash": prev_hash.hex(),
            "resource": event.resource,
            "seq": seq,
            "time": time,
        }
    )
    # The frozen dataclass's __init__ sets each field through object.__setattr__ (about 1.5 µs
    # for these twelve); filling the new instance's __dict__ gives the same object in a
    # quarter of that. AuditRecord has no __post_init__ to skip.
    record: AuditRecord = object.__new__(AuditRecord)
    record.__dict__.update(
        seq=seq,
        time=time,
        actor=event.actor,
        action=event.action,
        resource=event.resource,
        decision=event.decision,
        policies=policies,
        cost=event.cost,
        details=details,
        prev_hash=prev_hash,
        hash=leaf_hash(data),
        columns=(policy_json.decode(), details_json.decode()),
    )
    return record


def seal_batch(
    stamped: Sequence[tuple[AuditEvent, str]], *, next_seq: int, last_hash: bytes
) -> list[AuditRecord]:
    """Chain ``(event, time)`` pairs onto a log whose next seq is ``next_seq`` and whose last
    leaf hash is ``last_hash``."""
    records = []
    seq = next_seq
    for event, time in stamped:
        record = seal(event, seq=seq, time=time, prev_hash=last_hash)
        records.append(record)
        last_hash = record.hash
        seq += 1
    return records
