"""Typed journal entries of a session, and the stream events SSE consumers read.

A session is its journal: every entry below is one row (``kind`` + the orjson bytes of its
payload) in the session journal store, and the orchestration (:mod:`corral.agents.orchestration`)
decides the next step from these entries alone. Payload keys are short because a dormant
session's rows must stay small (the issue budgets 2 KB a session).

Entries are slots dataclasses, not frozen ones: a frozen dataclass's ``__init__`` sets each
field through ``object.__setattr__`` (several times the cost of a plain store), and a session
makes a dozen entries a turn. Nothing changes an entry once it is made.

``step`` numbers activities (model and tool calls) from 1 in the order they are scheduled; the
idempotency key of step ``n`` is ``f"{session_id}:{n}"``. A tool call that needs approval gets
its step number when the approval is requested, and keeps it. A model call's
``activity_scheduled`` is usually not journaled: its ``activity_completed`` (or
``activity_failed``, which carries the attempt) stands for it (see ``Runner._defer``).

:class:`StreamEvent` is what a live subscriber sees (``corral.agents.stream``): the SSE event
types of the sessions API, derived from journal entries plus model deltas, which are not
journaled (the completed model message is).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass
from typing import Any, Literal

import orjson

ActivityKind = Literal["model", "tool"]
State = Literal[
    "active", "waiting_approval", "waiting_input", "completed", "failed", "terminated", "expired"
]
STATES: tuple[State, ...] = (
    "active",
    "waiting_approval",
    "waiting_input",
    "completed",
    "failed",
    "terminated",
    "expired",
)
ENDED: frozenset[str] = frozenset({"completed", "failed", "terminated", "expired"})
PASSIVE: frozenset[str] = frozenset({"waiting_approval", "waiting_input"})


def idempotency_key(session_id: str, step: int) -> str:
    return f"{session_id}:{step}"


@dataclass(slots=True)
class SessionCreated:
    kind = "session_created"
    namespace: str
    agent: str
    limits: dict[str, Any]
    memory: str = "conversation"
    user: str | None = None
    actors: tuple[str, ...] = ()


@dataclass(slots=True)
class UserMessage:
    kind = "user_message"
    text: str


@dataclass(slots=True)
class ActivityScheduled:
    """An activity about to run. For tools: which function, with which arguments, for which
    model tool-call id. ``attempt`` counts retries (after a crash or a retryable failure)."""

    kind = "activity_scheduled"
    step: int
    activity: ActivityKind
    key: str
    function: str | None = None
    arguments: dict[str, Any] | None = None
    call_id: str | None = None
    attempt: int = 1


@dataclass(slots=True)
class ActivityCompleted:
    """Model: ``{"message": {...}, "usage": {...}}``. Tool: ``{"content": str, "error": bool}``."""

    kind = "activity_completed"
    step: int
    result: dict[str, Any]


@dataclass(slots=True)
class ActivityFailed:
    """``retryable`` failures are scheduled again (model calls, up to a few attempts); others
    are final for the step (a tool's failure goes back to the model as a tool error)."""

    kind = "activity_failed"
    step: int
    code: str
    error: str
    retryable: bool = False
    attempt: int = 1


@dataclass(slots=True)
class ApprovalRequested:
    kind = "approval_requested"
    step: int
    function: str
    arguments: dict[str, Any]
    call_id: str
    reason: str = ""


@dataclass(slots=True)
class ApprovalDecided:
    kind = "approval_decided"
    step: int
    approved: bool
    reason: str = ""
    by: str | None = None


@dataclass(slots=True)
class Final:
    kind = "final"
    text: str


@dataclass(slots=True)
class Error:
    """A visible problem the session survived or ended with (bad tool call, bad result…)."""

    kind = "error"
    code: str
    message: str
    step: int | None = None
    call_id: str | None = None
    """Set when the error answers one tool call of the model (it goes back as that call's
    result, so the model can correct itself)."""


@dataclass(slots=True)
class Terminated:
    """The session ended ``failed`` or ``terminated`` (limits, a person, a fatal error)."""

    kind = "terminated"
    state: Literal["failed", "terminated", "completed"]
    reason: str


@dataclass(slots=True)
class Expired:
    kind = "expired"
    reason: str


Event = (
    SessionCreated
    | UserMessage
    | ActivityScheduled
    | ActivityCompleted
    | ActivityFailed
    | ApprovalRequested
    | ApprovalDecided
    | Final
    | Error
    | Terminated
    | Expired
)
_MISSING: Any = object()
_TYPES: dict[str, type[Any]] = {
    cls.kind: cls
    for cls in (
        SessionCreated,
        UserMessage,
        ActivityScheduled,
        ActivityCompleted,
        ActivityFailed,
        ApprovalRequested,
        ApprovalDecided,
        Final,
        Error,
        Terminated,
        Expired,
    )
}
_FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(cls.__dataclass_fields__) for kind, cls in _TYPES.items()
}
_SPECS: dict[str, tuple[tuple[str, Any], ...]] = {
    kind: tuple(
        (name, _MISSING if f.default is MISSING else f.default)
        for name, f in cls.__dataclass_fields__.items()
    )
    for kind, cls in _TYPES.items()
}


def _entry_encoder(kind: str) -> Callable[[Any], tuple[str, bytes]]:
    """The encoder of one kind of entry, generated as dataclasses generate ``__init__``: fields
    read as attributes, not ``getattr`` by name in a loop (twice as fast; every journaled entry
    goes through one). Fields without a default are always written; the others only when they
    differ from it (``is not``, then ``!=``), in field order, exactly as a loop would."""
    namespace: dict[str, Any] = {"dumps": orjson.dumps}
    required = [name for name, default in _SPECS[kind] if default is _MISSING]
    lines = [
        "def encode_entry(entry):",
        "    payload = {" + ", ".join(f"{name!r}: entry.{name}" for name in required) + "}",
    ]
    for name, default in _SPECS[kind]:
        if default is _MISSING:
            continue
        namespace[f"default_{name}"] = default
        lines += [
            f"    value = entry.{name}",
            f"    if value is not default_{name} and value != default_{name}:",
            f"        payload[{name!r}] = value",
        ]
    lines.append(f"    return {kind!r}, dumps(payload)")
    exec("\n".join(lines), namespace)  # the source is built above from field names only
    encoder: Callable[[Any], tuple[str, bytes]] = namespace["encode_entry"]
    return encoder


_ENCODERS = {kind: _entry_encoder(kind) for kind in _TYPES}


def encode(event: Event) -> tuple[str, bytes]:
    """(kind, payload): fields at their default values are left out, to keep rows small."""
    return _ENCODERS[event.kind](event)


def decode(kind: str, payload: bytes) -> Event:
    cls = _TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown journal entry kind {kind!r}")
    values = orjson.loads(payload)
    if kind == "session_created" and "actors" in values:
        values["actors"] = tuple(values["actors"])
    event: Event = cls(**values)
    return event


def to_json(event: Event) -> dict[str, Any]:
    """The entry as the sessions API shows it: ``{"kind": …, …fields}``."""
    return {"kind": event.kind, **{name: getattr(event, name) for name in _FIELDS[event.kind]}}


StreamType = Literal[
    "state",
    "step_started",
    "model_delta",
    "tool_call",
    "approval_needed",
    "tool_result",
    "final",
    "error",
]


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One server-sent event: ``type`` is the SSE event name, ``data`` its JSON body."""

    type: StreamType
    session_id: str
    data: dict[str, Any]
    step: int | None = None
