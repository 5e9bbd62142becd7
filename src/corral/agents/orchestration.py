"""Deterministic orchestration: fold a session's journal into state, decide the next step.

Nothing here does I/O or reads a clock: :func:`fold` applies journal entries to a
:class:`SessionState`, :func:`decide` looks at that state (and the agent's config) and says
what the runtime must do next. Replay after a crash is the same fold over the same entries, so
it reaches the same decision: a completed activity is in the journal and is never scheduled
again; an activity scheduled without a result was in flight, and :func:`decide` says to run it
again with the same step (and so the same idempotency key).

Decisions that depend on the outside world (a policy gate, a clock) are made by the runtime and
journaled, so the fold sees their outcome rather than re-deciding it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from corral.agents.config import AgentConfig, Limits
from corral.agents.events import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ApprovalDecided,
    ApprovalRequested,
    Error,
    Event,
    Expired,
    Final,
    SessionCreated,
    Terminated,
    UserMessage,
)

MODEL_ATTEMPTS = 3
"""A model call that fails with a retryable error is tried this many times in all."""
DEFAULT_LIMITS = Limits()
_LIMITS: dict[tuple[Any, ...], Limits] = {}
"""Limits by their journaled form: sessions of one agent share one (frozen) object, and the
fold of a creation skips building and checking it again."""


def _limits(value: dict[str, Any]) -> Limits:
    try:  # with the types: 1 and 1.0 (and True) are one key otherwise
        key = tuple((name, type(item), item) for name, item in value.items())
        limits = _LIMITS.get(key)
    except TypeError:  # not scalars: not from Limits.to_json; from_json says what is wrong
        return Limits.from_json(value)
    if limits is None:
        if len(_LIMITS) >= 1_000:  # many distinct limits (agents edited often): start afresh
            _LIMITS.clear()
        limits = _LIMITS[key] = Limits.from_json(value)
    return limits


# Pending calls and decisions are slots dataclasses, not frozen ones (as the journal entries,
# see corral.agents.events): a frozen __init__ sets each field through object.__setattr__, and
# a step makes a few of them. Nothing changes one once it is made.


@dataclass(slots=True)
class PendingCall:
    """One tool call the model asked for, not yet handled. ``problem`` is why it cannot run
    as asked (invalid JSON arguments), found when the model's message was folded."""

    call_id: str
    function: str
    arguments: dict[str, Any]
    problem: str | None = None


@dataclass(slots=True)
class SessionState:
    id: str
    namespace: str = ""
    agent: str = ""
    user: str | None = None
    actors: tuple[str, ...] = ()
    limits: Limits = field(default=DEFAULT_LIMITS)  # frozen: one shared object will do
    memory: str = "conversation"
    created: float = 0.0
    seq: int = 0
    state: str = "active"
    reason: str = ""
    step: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    pending: list[PendingCall] = field(default_factory=list)
    in_flight: ActivityScheduled | None = None
    approval: ApprovalRequested | None = None
    approval_at: float = 0.0
    approved: ApprovalRequested | None = None
    model_failure: ActivityFailed | None = None
    answer: str | None = None
    """The model's last message had no tool calls: this is its answer, not yet journaled."""
    tokens: int = 0
    cost: float = 0.0
    errors: int = 0

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"steps": self.step, "tokens": self.tokens}
        if self.cost:
            out["cost"] = round(self.cost, 6)
        if self.reason:
            out["reason"] = self.reason
        if self.approval is not None:
            out["approval"] = self.approval.step
        return out


def fold(state: SessionState, event: Event, seq: int, created: float) -> None:
    """Apply one journal entry."""
    state.seq = seq
    # The kinds of every step first: a class pattern is an isinstance check, tried in order.
    match event:
        case ActivityCompleted():
            # A model call's result stands for its scheduled entry too (that one is journaled
            # only when something else is written first; see ``Runner._defer``): the step and
            # the cleared failure below are what folding it would have done.
            if event.step > state.step:
                state.step = event.step
            scheduled = state.in_flight
            state.in_flight = None
            state.model_failure = None
            if scheduled is not None and scheduled.activity == "tool":
                _tool_message(state, scheduled.call_id, str(event.result.get("content", "")))
            else:
                _model_message(state, event)
        case ActivityScheduled():
            if event.step > state.step:
                state.step = event.step
            state.in_flight = event
            state.model_failure = None
            if event.activity == "tool":
                state.approved = None
                state.pending = [p for p in state.pending if p.call_id != event.call_id]
        case UserMessage():
            state.messages.append({"role": "user", "content": event.text})
            state.state = "active"
        case Final():
            state.answer = None
            state.state = "waiting_input" if state.memory == "conversation" else "completed"
        case SessionCreated():
            state.namespace, state.agent = event.namespace, event.agent
            state.user, state.actors = event.user, event.actors
            state.limits = _limits(event.limits)
            state.memory = event.memory
            state.created = created
            state.state = "waiting_input"
        case ActivityFailed():
            state.step = max(state.step, event.step)
            scheduled = state.in_flight
            state.in_flight = None
            state.errors += 1
            if scheduled is not None and scheduled.activity == "tool":
                _tool_message(state, scheduled.call_id, f"error ({event.code}): {event.error}")
            else:
                state.model_failure = event
        case ApprovalRequested():
            state.step = max(state.step, event.step)
            state.pending = [p for p in state.pending if p.call_id != event.call_id]
            state.approval, state.approval_at = event, created
            state.state = "waiting_approval"
        case ApprovalDecided():
            request, state.approval = state.approval, None
            state.state = "active"
            if request is None or request.step != event.step:
                return
            if event.approved:
                state.approved = request
            else:
                why = f": {event.reason}" if event.reason else ""
                _tool_message(state, request.call_id, f"error (denied): the call was denied{why}")
        case Error():
            state.errors += 1
            if event.call_id is not None:
                state.pending = [p for p in state.pending if p.call_id != event.call_id]
                _tool_message(state, event.call_id, f"error ({event.code}): {event.message}")
        case Terminated():
            state.state, state.reason = event.state, event.reason
        case Expired():
            state.state, state.reason = "expired", event.reason


def _tool_message(state: SessionState, call_id: str | None, content: str) -> None:
    state.messages.append({"role": "tool", "tool_call_id": call_id or "", "content": content})


def _model_message(state: SessionState, event: ActivityCompleted) -> None:
    message = event.result.get("message") or {}  # read only: no copy
    usage = event.result.get("usage") or {}
    state.tokens += int(usage.get("total_tokens") or 0)
    state.cost += float(usage.get("cost_usd") or 0.0)
    calls = message.get("tool_calls") or []
    # "" rather than null beside tool calls: OpenAI takes either, llama.cpp's server only a string.
    assistant: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
    if calls:
        assistant["tool_calls"] = calls
    state.messages.append(assistant)
    state.pending = (
        [_pending(call, index, event.step) for index, call in enumerate(calls)] if calls else []
    )
    state.answer = None if calls else str(message.get("content") or "")


def _pending(call: Any, index: int, step: int) -> PendingCall:
    call_id = f"call_{step}_{index}"
    if not isinstance(call, dict):
        return PendingCall(call_id, "", {}, f"tool call {index} is not an object")
    call_id = str(call.get("id") or call_id)
    described = call.get("function")
    function: dict[str, Any] = described if isinstance(described, dict) else {}
    name = str(function.get("name") or "")
    raw = function.get("arguments")
    if raw is None or raw == "":
        return PendingCall(call_id, name, {})
    if isinstance(raw, dict):
        return PendingCall(call_id, name, raw)
    try:
        arguments = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError) as error:
        return PendingCall(call_id, name, {}, f"invalid tool-call arguments (not JSON): {error}")
    if not isinstance(arguments, dict):
        return PendingCall(call_id, name, {}, "invalid tool-call arguments: not a JSON object")
    return PendingCall(call_id, name, arguments)


# -- decisions -----------------------------------------------------------------------------


@dataclass(slots=True)
class Wait:
    """Nothing to run: the session waits for a person (or has ended)."""


@dataclass(slots=True)
class RunModel:
    step: int
    attempt: int = 1
    resume: bool = False
    """True: the step is in the journal already (in flight at a crash); run it, journal
    nothing new before it."""


@dataclass(slots=True)
class RunTool:
    step: int
    function: str
    arguments: dict[str, Any]
    call_id: str
    resume: bool = False
    approved: bool = False


@dataclass(slots=True)
class CheckTool:
    """Ask the policy gate about this call, then journal what it said."""

    step: int
    call: PendingCall


@dataclass(slots=True)
class Reject:
    """Answer a tool call with an error, without running it (bad arguments, unknown tool)."""

    call_id: str
    code: str
    message: str


@dataclass(slots=True)
class Finish:
    text: str


@dataclass(slots=True)
class End:
    state: str
    reason: str


Decision = Wait | RunModel | RunTool | CheckTool | Reject | Finish | End


def decide(state: SessionState, agent: AgentConfig) -> Decision:
    """The next thing the session must do, from its journal alone."""
    if state.state != "active":
        return Wait()
    flight = state.in_flight
    if flight is not None:  # scheduled, no result: in flight at a crash; same step, same key
        if flight.activity == "model":
            return RunModel(flight.step, flight.attempt, resume=True)
        return RunTool(
            flight.step,
            flight.function or "",
            flight.arguments or {},
            flight.call_id or "",
            resume=True,
        )
    if state.approved is not None:
        request = state.approved
        return RunTool(
            request.step, request.function, request.arguments, request.call_id, approved=True
        )
    if state.model_failure is not None:
        failure = state.model_failure
        if failure.retryable and failure.attempt < MODEL_ATTEMPTS:
            return RunModel(failure.step, failure.attempt + 1)
        return End("failed", f"model call failed ({failure.code}): {failure.error}")
    limit = _limit_reached(state)
    if state.pending:
        call = state.pending[0]
        if call.problem is not None:
            return Reject(call.call_id, "invalid_tool_call", call.problem)
        if call.function not in agent.tools:
            known = ", ".join(sorted(agent.tools)) or "none"
            return Reject(
                call.call_id,
                "unknown_tool",
                f"the model called {call.function!r}, which this agent does not have "
                f"(tools: {known})",
            )
        if limit:
            return End("terminated", limit)
        return CheckTool(state.step + 1, call)
    if state.answer is not None:
        return Finish(state.answer)
    if state.messages and state.messages[-1]["role"] in ("user", "tool"):
        if limit:
            return End("terminated", limit)
        return RunModel(state.step + 1)
    return Wait()


def _limit_reached(state: SessionState) -> str:
    limits = state.limits
    if state.step >= limits.max_steps:
        return f"limit reached: maxSteps {limits.max_steps}"
    if limits.max_tokens is not None and state.tokens >= limits.max_tokens:
        return f"limit reached: maxTokens {limits.max_tokens} (used {state.tokens})"
    if limits.max_cost_usd is not None and state.cost >= limits.max_cost_usd:
        return f"limit reached: maxCostUSD {limits.max_cost_usd} (spent {state.cost:.6f})"
    return ""
