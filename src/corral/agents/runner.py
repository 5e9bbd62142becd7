"""The executor: one task per live session, stepping it until it waits or ends.

Each step: ask :func:`~corral.agents.orchestration.decide`, do what it says, journal the
outcome. A tool call's ``activity_scheduled`` entry is queued without waiting (its step number,
and so its idempotency key, follows from the journal anyway); a model call's is journaled only
when something other than its result is written next (the result stands for it; see
``Runner._defer``). An activity's result is awaited until
durable before the session moves on, so a crash loses at most the activity in flight, which
the next worker runs again with the same key. Journal writes of all sessions meet in the
store's group commit.

A session whose state leaves ``active`` (waiting for a person, or ended) is passivated: the
write that changes the state also gives the lease back and sets the row's ``wake_at`` (the
approval timeout or the end of the session's max duration), and the task ends, so nothing of it
stays in memory. A lost lease (another worker took the session) ends the task without writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from corral.agents.activities import ActivityError, Deadlines, call_model, call_tool
from corral.agents.config import AgentConfig, AgentDirectory
from corral.agents.events import (
    ENDED,
    PASSIVE,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ApprovalDecided,
    ApprovalRequested,
    Error,
    Event,
    Expired,
    Final,
    StreamEvent,
    Terminated,
    encode,
    idempotency_key,
)
from corral.agents.journal import JournalStore, is_conflict
from corral.agents.orchestration import (
    CheckTool,
    End,
    Finish,
    Reject,
    RunModel,
    RunTool,
    SessionState,
    Wait,
    decide,
    fold,
)
from corral.agents.seams import ModelCaller, SessionInfo, TokenSource, ToolCaller, ToolGate
from corral.agents.stream import StreamHub

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Live:
    """A session with a task in this process."""

    state: SessionState
    task: asyncio.Task[None] | None = None
    leased: bool = False
    """This worker's lease is committed (set when the task starts: after the create, claim or
    acquire that took it); renewals that miss it then mean another worker has it."""
    settled: bool = False
    """The task ended with the session's state change written (not cancelled, not lost)."""
    deferred: tuple[ActivityScheduled, float] | None = None
    """A model call's ``activity_scheduled`` (and when it was made), folded but not journaled:
    its result replaces it; any other next write carries it (see ``Runner._defer``)."""
    _info: tuple[SessionState, SessionInfo] | None = None

    def info(self) -> SessionInfo:
        """Who the session is; built once per state object (who does not change in a run)."""
        cached = self._info
        s = self.state
        if cached is not None and cached[0] is s:
            return cached[1]
        info = SessionInfo(s.id, s.namespace, s.agent, s.user, s.actors)
        self._info = (s, info)
        return info


class _Lost(Exception):
    """The session's lease is gone (another worker runs it now): stop without writing."""


class Runner:
    def __init__(
        self,
        journal: JournalStore,
        agents: AgentDirectory,
        model: ModelCaller,
        tools: ToolCaller,
        tokens: TokenSource,
        gate: ToolGate,
        *,
        hub: StreamHub,
        worker: str,
        lease_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self._journal = journal
        self._agents = agents
        self._model = model
        self._tools = tools
        self._tokens = tokens
        self._gate = gate
        self._hub = hub
        self._watched = hub.watched_ids
        """Ids of sessions with subscribers (``id in`` it is ``hub.watched(id)``, a call fewer
        on every step)."""
        self._worker = worker
        self._lease_seconds = lease_seconds
        self._clock = clock
        self.live: dict[str, Live] = {}
        self._slots: dict[tuple[str, str], asyncio.Semaphore] = {}
        self._deadlines = Deadlines()
        self._tool_specs: dict[int, tuple[AgentConfig, list[dict[str, Any]]]] = {}

    # -- journal writes ----------------------------------------------------------------------

    def append(
        self,
        live: Live,
        events: Sequence[Event],
        *,
        claim: Sequence[str] = (),
    ) -> Awaitable[None]:
        """Fold ``events`` into the session, publish them, and queue them for the journal; the
        awaitable resolves when they are durable. A state change travels with them (and gives
        the lease back when the session passivates or ends)."""
        s = live.state
        sid = s.id
        before = s.state
        now = self._clock()
        rows: list[tuple[str, int, str, bytes, float]] = []
        deferred = live.deferred
        if deferred is not None:
            live.deferred = None
            scheduled, at = deferred
            result = events[0] if events else None
            if not (
                isinstance(result, ActivityCompleted | ActivityFailed)
                and result.step == scheduled.step
            ):  # not its result: journal it first (it is folded already)
                s.seq += 1
                kind, payload = encode(scheduled)
                rows.append((sid, s.seq, kind, payload, at))
        watched = sid in self._watched
        seq = s.seq
        for event in events:
            seq += 1
            kind, payload = encode(event)
            rows.append((sid, seq, kind, payload, now))
            fold(s, event, seq, now)
            if watched:
                self._publish(s, event)
        if s.state == before and not claim:  # a plain step: the session row stays as it is
            return self._journal.append(sid, rows, owner=self._worker)
        state = s.state
        release = state != "active"
        # Passivated: woken at its timeout; active again, or ended: nothing to wake up for.
        wake_at = self._wake_at(s) if state in PASSIVE else 0.0
        if release:
            live.leased = False
        written = self._journal.append(
            sid,
            rows,
            owner=self._worker,
            state=state,
            summary=orjson.dumps(s.summary()),
            wake_at=wake_at,
            release=release,
            claim=claim,
            lease_seconds=self._lease_seconds,
        )
        if watched:
            # Told once durable: a subscriber whose stream ends on it may read the journal.
            data = {"state": s.state, "reason": s.reason} if s.reason else {"state": s.state}
            future = asyncio.ensure_future(written)
            future.add_done_callback(
                lambda done: (
                    None
                    if done.cancelled() or done.exception()
                    else self._hub.publish(StreamEvent("state", s.id, data))
                )
            )
            return future
        return written

    def _defer(self, live: Live, event: ActivityScheduled) -> None:
        """Fold and publish a model call's ``activity_scheduled`` now; journal it only if
        something other than the call's result is written next.

        The result (``activity_completed`` or ``activity_failed``) carries the step and the
        attempt, and the fold of a result without its scheduled entry reaches the same state
        (see ``orchestration.fold``); the model call has no side effect outside corral, so a
        crash before the result merely asks the same question again, with the same step (the
        step follows from the journal). That saves a journal row per model step. The entry
        takes no sequence number until it is written, so the journal has no gap. Tool calls
        are journaled before they run.
        """
        s = live.state
        now = self._clock()
        fold(s, event, s.seq, now)  # s.seq unchanged: the row is numbered if it is written
        live.deferred = (event, now)
        if s.id in self._watched:
            self._publish(s, event)

    def _queue(self, live: Live, events: Sequence[Event]) -> None:
        """Append without waiting (what follows will wait, and fails too if this does)."""
        written = self.append(live, events)
        # The stores' appends are futures already: ensure_future would only check that.
        future = written if isinstance(written, asyncio.Future) else asyncio.ensure_future(written)
        future.add_done_callback(_consume)

    async def _write(self, live: Live, events: Sequence[Event]) -> None:
        try:
            await self.append(live, events)
        except Exception as error:
            if is_conflict(error):
                raise _Lost(str(error)) from error
            raise

    def _wake_at(self, s: SessionState) -> float:
        """When a passivated session needs a worker again without anybody asking."""
        wake_at = s.created + s.limits.max_duration_seconds
        if s.state == "waiting_approval":
            wake_at = min(wake_at, s.approval_at + self._approval_timeout(s))
        return wake_at

    def _approval_timeout(self, s: SessionState) -> float:
        config = self._agents.get(s.namespace, s.agent)
        return config.approvals.timeout_seconds if config is not None else 3_600.0

    def _publish(self, s: SessionState, event: Event) -> None:
        hub, sid = self._hub, s.id
        match event:
            case ActivityScheduled():
                hub.publish(
                    StreamEvent(
                        "step_started",
                        sid,
                        {"activity": event.activity, "attempt": event.attempt},
                        event.step,
                    )
                )
                if event.activity == "tool":
                    hub.publish(
                        StreamEvent(
                            "tool_call",
                            sid,
                            {
                                "function": event.function,
                                "arguments": event.arguments,
                                "call_id": event.call_id,
                            },
                            event.step,
                        )
                    )
            case ActivityCompleted() if "content" in event.result:
                hub.publish(StreamEvent("tool_result", sid, dict(event.result), event.step))
            case ActivityFailed():
                hub.publish(
                    StreamEvent(
                        "error", sid, {"code": event.code, "message": event.error}, event.step
                    )
                )
            case ApprovalRequested():
                hub.publish(
                    StreamEvent(
                        "approval_needed",
                        sid,
                        {
                            "function": event.function,
                            "arguments": event.arguments,
                            "reason": event.reason,
                        },
                        event.step,
                    )
                )
            case Final():
                hub.publish(StreamEvent("final", sid, {"text": event.text}))
            case Error():
                hub.publish(
                    StreamEvent(
                        "error", sid, {"code": event.code, "message": event.message}, event.step
                    )
                )
            case _:
                pass

    # -- tasks ---------------------------------------------------------------------------------

    def start(self, live: Live) -> None:
        self.live[live.state.id] = live
        live.leased = True
        live.task = asyncio.create_task(self._run(live), name=f"session {live.state.id}")

    async def resume(self, session_id: str, load: Callable[[str], Awaitable[SessionState]]) -> None:
        """A session this worker just acquired: replay its journal, act on a due timeout,
        then run it (or give it back if there is nothing to do)."""
        live = Live(SessionState(session_id))
        self.live[session_id] = live
        try:
            live.state = await load(session_id)
            s = live.state
            now = self._clock()
            if s.state in PASSIVE:
                if now >= s.created + s.limits.max_duration_seconds:
                    await self._write(
                        live,
                        [Expired(f"maxDurationSeconds {s.limits.max_duration_seconds:g} passed")],
                    )
                elif s.approval is not None and now >= s.approval_at + self._approval_timeout(s):
                    await self._write(
                        live,
                        [
                            ApprovalDecided(
                                s.approval.step,
                                False,
                                f"no decision within {self._approval_timeout(s):g}s",
                                "corral",
                            )
                        ],
                    )
                    self.start(live)
                    return
                else:  # woken early (the timeout moved): give it back with its wake-up
                    await self._journal.append(
                        session_id,
                        [],
                        owner=self._worker,
                        release=True,
                        wake_at=self._wake_at(s),
                    )
            elif s.state in ENDED:
                await self._journal.release(self._worker, [session_id])
            else:
                self.start(live)
                return
        except Exception:
            log.exception("could not resume session %s", session_id)
        self.live.pop(session_id, None)

    def lost(self, session_id: str) -> None:
        live = self.live.get(session_id)
        if live is not None and live.task is not None:
            log.warning("session %s: lease lost to another worker; stopping here", session_id)
            live.task.cancel()

    async def cancel(self, live: Live) -> None:
        if live.task is not None and not live.task.done():
            live.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await live.task

    async def cancel_all(self) -> list[str]:
        self._deadlines.close()
        held = [sid for sid, live in self.live.items() if live.leased]
        lives = list(self.live.values())
        for live in lives:
            if live.task is not None:
                live.task.cancel()
        for live in lives:
            if live.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await live.task
        return held

    def _openai_tools(self, config: AgentConfig) -> list[dict[str, Any]]:
        """The request's ``tools`` for this config object, built once (configs are frozen; a
        changed Agent is a new object)."""
        cached = self._tool_specs.get(id(config))
        if cached is None or cached[0] is not config:
            if len(self._tool_specs) > 1_000:
                self._tool_specs.clear()
            cached = (config, [binding.openai_tool() for binding in config.tools.values()])
            self._tool_specs[id(config)] = cached
        return cached[1]

    def _slot(self, config: AgentConfig) -> asyncio.Semaphore | None:
        limit = config.limits.max_concurrent_sessions
        if limit is None:
            return None
        key = (config.namespace, config.name)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = asyncio.Semaphore(limit)
        return slot

    async def _run(self, live: Live) -> None:
        s = live.state
        try:
            config = self._agents.get(s.namespace, s.agent)
            if config is None:
                await self._write(
                    live,
                    [
                        Terminated(
                            "failed", f"agent {s.namespace}/{s.agent} does not exist any more"
                        )
                    ],
                )
                return
            slot = self._slot(config)
            if slot is None:
                await self._steps(live, config)
            else:
                async with slot:  # queued here while the agent's sessions are at its limit
                    await self._steps(live, config)
            live.settled = True
        except _Lost as lost:
            log.warning("%s; stopping here", lost)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if is_conflict(error):  # a hot-path write awaited without _write: the same as _Lost
                log.warning("%s; stopping here", error)
                return
            log.exception("session %s failed in the runtime", s.id)
            with contextlib.suppress(Exception):
                await self._write(live, [Terminated("failed", f"runtime error: {error!r}")])
        finally:
            if self.live.get(s.id) is live:
                del self.live[s.id]

    async def _steps(self, live: Live, config: AgentConfig) -> None:
        s = live.state
        while s.state == "active":
            if self._clock() >= s.created + s.limits.max_duration_seconds:
                await self._write(
                    live, [Expired(f"maxDurationSeconds {s.limits.max_duration_seconds:g} passed")]
                )
                return
            decision = decide(s, config)
            match decision:
                case RunModel():
                    await self._run_model(live, config, decision)
                case RunTool():
                    await self._run_tool(live, config, decision)
                case CheckTool():
                    await self._check_tool(live, config, decision)
                case Reject():
                    self._queue(
                        live, [Error(decision.code, decision.message, call_id=decision.call_id)]
                    )
                case Finish():
                    await self._write(live, [Final(decision.text)])
                case End():
                    await self._write(
                        live,
                        [
                            Terminated(
                                "failed" if decision.state == "failed" else "terminated",
                                decision.reason,
                            )
                        ],
                    )
                case Wait():
                    # Active with nothing to do: a journal this runtime cannot continue.
                    await self._write(
                        live,
                        [
                            Terminated(
                                "failed",
                                "the session has nothing to do next (journal is incomplete)",
                            )
                        ],
                    )

    async def _run_model(self, live: Live, config: AgentConfig, run: RunModel) -> None:
        s = live.state
        if not run.resume:
            self._defer(
                live,
                ActivityScheduled(
                    run.step, "model", idempotency_key(s.id, run.step), attempt=run.attempt
                ),
            )
        request: dict[str, Any] = {"model": config.model, "messages": _messages(config, s)}
        if config.tools:
            request["tools"] = self._openai_tools(config)
            choice = _tool_choice(config, s)
            if choice is not None:
                request["tool_choice"] = choice
        on_delta = None
        if s.id in self._watched:

            def on_delta(delta: dict[str, Any]) -> None:
                self._hub.publish(StreamEvent("model_delta", s.id, delta, run.step))

        remaining = s.created + s.limits.max_duration_seconds - self._clock()
        try:
            result = await call_model(
                self._model,
                request,
                self._tokens.model_token(live.info(), config),
                seconds=max(remaining, 0.001),
                deadlines=self._deadlines,
                on_delta=on_delta,
                task=live.task,
            )
        except ActivityError as error:
            await self._write(
                live,
                [ActivityFailed(run.step, error.code, error.message, error.retryable, run.attempt)],
            )
            return
        events: list[Event] = [ActivityCompleted(run.step, result)]
        if not result["message"].get("tool_calls"):
            # An answer: decide() would say Finish next; it goes in the same write.
            events.append(Final(str(result["message"].get("content") or "")))
        await self.append(live, events)  # a conflict: _run stops the session (as _write would)

    async def _run_tool(self, live: Live, config: AgentConfig, run: RunTool) -> None:
        s = live.state
        key = idempotency_key(s.id, run.step)
        if not run.resume:
            self._queue(
                live,
                [
                    ActivityScheduled(
                        run.step, "tool", key, run.function, run.arguments, run.call_id
                    )
                ],
            )
        binding = config.tools.get(run.function)
        if binding is None:
            await self._write(
                live,
                [
                    ActivityFailed(
                        run.step, "unknown_tool", f"the agent has no tool {run.function!r} any more"
                    )
                ],
            )
            return
        try:
            result = await call_tool(
                self._tools,
                binding,
                run.arguments,
                key,
                self._tokens.tool_token(live.info(), config, binding.tool),
                self._deadlines,
                live.task,
            )
        except ActivityError as error:
            await self._write(live, [ActivityFailed(run.step, error.code, error.message)])
            return
        await self.append(live, [ActivityCompleted(run.step, result)])  # conflicts: see _run

    async def _check_tool(self, live: Live, config: AgentConfig, check: CheckTool) -> None:
        call = check.call
        binding = config.tools[call.function]
        try:
            verdict = await self._gate.decide(live.info(), config, binding, call.arguments)
            effect, reason = verdict.effect, verdict.reason
        except Exception as error:  # fail closed: no decision is a denial, and it is visible
            effect, reason = "deny", f"the policy check failed: {error!r}"
        if effect == "allow":
            await self._run_tool(
                live, config, RunTool(check.step, call.function, call.arguments, call.call_id)
            )
        elif effect == "approve":
            await self._write(
                live,
                [
                    ApprovalRequested(
                        check.step, call.function, call.arguments, call.call_id, reason
                    )
                ],
            )
        else:
            self._queue(
                live,
                [Error("denied", reason or f"policy denies {call.function}", call_id=call.call_id)],
            )


def _tool_choice(config: AgentConfig, s: SessionState) -> str | dict[str, Any] | None:
    """The agent's ``tool_choice`` on the first model call of a turn (the conversation ends
    with the user's message), else None: the model decides."""
    choice = config.tool_choice
    if choice is None or not s.messages or s.messages[-1].get("role") != "user":
        return None
    if choice in ("auto", "required", "none"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def _messages(config: AgentConfig, s: SessionState) -> list[dict[str, Any]]:
    if config.instructions:
        return [{"role": "system", "content": config.instructions}, *s.messages]
    return list(s.messages)


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # reported by the next awaited write of the same session
