"""The agent runtime: the sessions API's entry point and the owner of every live session.

Flow of a turn: :meth:`AgentRuntime.send_message` claims a passivated session (one fenced
append), folds its journal and starts a task; the task (:mod:`corral.agents.runner`) asks the
orchestration for the next step, runs it through the seams and journals the result, until the
session waits for a person (it passivates: the task ends, nothing stays in memory) or ends.

Crash safety and many workers: every live session is leased to this worker in the journal; a
maintenance loop renews the leases (Postgres) and acquires sessions that need a worker, which is
how a restarted process resumes its sessions, how a surviving worker takes over a dead one's,
and how a passivated session's timeout (approval, max duration) is acted on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from corral.agents.config import AgentConfig, AgentDirectory
from corral.agents.errors import SessionExists, SessionStateError, UnknownAgent, UnknownSession
from corral.agents.events import (
    ENDED,
    ApprovalDecided,
    Event,
    SessionCreated,
    StreamEvent,
    Terminated,
    UserMessage,
    decode,
    encode,
    to_json,
)
from corral.agents.journal import JournalStore, StoredSession, is_conflict
from corral.agents.orchestration import SessionState, fold
from corral.agents.runner import Live, Runner
from corral.agents.seams import (
    ApprovalRulesGate,
    ModelCaller,
    NoTokens,
    TokenSource,
    ToolCaller,
    ToolGate,
)
from corral.agents.stream import StreamHub, Subscription

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SessionSummary:
    id: str
    namespace: str
    agent: str
    state: str
    created: float
    updated: float
    summary: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SessionView:
    """A session as ``GET …/sessions/{id}`` shows it: its row and its journal."""

    session: SessionSummary
    events: list[dict[str, Any]]


class AgentRuntime:
    """Runs the sessions of every agent in this process (see the module docstring)."""

    def __init__(
        self,
        journal: JournalStore,
        agents: AgentDirectory,
        model: ModelCaller,
        tools: ToolCaller,
        *,
        tokens: TokenSource | None = None,
        gate: ToolGate | None = None,
        worker: str | None = None,
        lease_seconds: float = 10.0,
        poll_seconds: float = 1.0,
        retention_seconds: float = 7 * 86_400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._journal = journal
        self._agents = agents
        self.worker = worker or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self._retention_seconds = retention_seconds
        self._clock = clock
        self._hub = StreamHub()
        self._runner = Runner(
            journal,
            agents,
            model,
            tools,
            tokens or NoTokens(),
            gate or ApprovalRulesGate(),
            hub=self._hub,
            worker=self.worker,
            lease_seconds=lease_seconds,
            clock=clock,
        )
        self._maintainer: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume the sessions that need a worker, then keep leases and wake-ups going."""
        await self._acquire()
        self._maintainer = asyncio.create_task(self._maintain(), name="agents-leases")

    async def stop(self) -> None:
        """Stop every live session where it is (its journal says where) and give its lease
        back, so another worker, or this one restarted, resumes it at once."""
        if self._maintainer is not None:
            self._maintainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintainer
            self._maintainer = None
        held = await self._runner.cancel_all()
        if held:
            await self._journal.release(self.worker, held)
        self._hub.close_all()

    async def __aenter__(self) -> AgentRuntime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def live_sessions(self) -> int:
        """Sessions with a task in this process (running or queued for a concurrency slot)."""
        return len(self._runner.live)

    # -- the sessions API --------------------------------------------------------------------

    async def create_session(
        self,
        namespace: str,
        agent: str,
        *,
        message: str | None = None,
        user: str | None = None,
        actors: Sequence[str] = (),
        session_id: str | None = None,
    ) -> str:
        """A new session of ``agent``; with ``message`` its first turn starts at once.

        ``session_id`` (else a new one) makes the create idempotent: when that session exists
        already, :class:`SessionExists` is raised and nothing is written."""
        config = self._agent(namespace, agent)
        if message is not None and not isinstance(message, str):
            raise SessionStateError("message must be a string")
        chosen = session_id is not None
        if session_id is None:
            session_id = new_session_id(self._clock())
        elif session_id in self._runner.live:
            raise SessionExists(session_id)
        now = self._clock()
        state = SessionState(session_id)
        events: list[Event] = [
            SessionCreated(
                namespace, agent, config.limits.to_json(), config.memory, user, tuple(actors)
            )
        ]
        if message is not None:
            events.append(UserMessage(message))
        rows = []
        for seq, event in enumerate(events, 1):
            kind, payload = encode(event)
            rows.append((session_id, seq, kind, payload, now))
            fold(state, event, seq, now)
        active = state.state == "active"
        live = Live(state) if active else None
        if live is not None:
            self._runner.live[session_id] = live
        try:
            await self._journal.create(
                session_id,
                namespace,
                agent,
                rows,
                state=state.state,
                owner=self.worker if active else None,
                lease_seconds=self._lease_seconds,
                summary=orjson.dumps(state.summary()),
                wake_at=None if active else now + config.limits.max_duration_seconds,
                now=now,
            )
        except BaseException as error:
            self._runner.live.pop(session_id, None)
            if chosen and getattr(error, "conflict", False):
                raise SessionExists(session_id) from None
            raise
        if live is not None:
            self._runner.start(live)
        return session_id

    async def send_message(self, session_id: str, text: str) -> None:
        """Activate a session that waits for input with the user's next message; returns when
        the message is journaled (the turn runs on; :meth:`subscribe` to follow it)."""
        if not isinstance(text, str):
            raise SessionStateError("message must be a string")
        live = await self._activate(session_id, "waiting_input")
        try:
            await self._runner.append(live, [UserMessage(text)], claim=("waiting_input",))
        except Exception as error:
            self._runner.live.pop(session_id, None)
            if is_conflict(error):
                raise SessionStateError(
                    f"session {session_id} was activated by another request or worker"
                ) from error
            raise
        self._runner.start(live)

    async def decide_approval(
        self,
        session_id: str,
        step: int,
        approve: bool,
        reason: str = "",
        *,
        by: str | None = None,
    ) -> None:
        """Approve or deny the tool call of ``step``; the session resumes either way (a denial
        goes back to the model as the call's error)."""
        live = await self._activate(session_id, "waiting_approval")
        request = live.state.approval
        if request is None or request.step != step:
            self._runner.live.pop(session_id, None)
            asked = request.step if request is not None else "none"
            raise SessionStateError(
                f"session {session_id} waits for approval of step {asked}, not step {step}"
            )
        try:
            await self._runner.append(
                live,
                [ApprovalDecided(step, bool(approve), reason, by)],
                claim=("waiting_approval",),
            )
        except Exception as error:
            self._runner.live.pop(session_id, None)
            if is_conflict(error):
                raise SessionStateError(
                    f"session {session_id}: step {step} was decided by another request"
                ) from error
            raise
        self._runner.start(live)

    async def terminate(self, session_id: str, reason: str = "terminated by a user") -> str:
        """End the session (``terminated``) wherever it is in this process; its state after."""
        live = self._runner.live.get(session_id)
        if live is not None and live.task is not None:
            await self._runner.cancel(live)
            if live.state.state not in ENDED:
                await self._runner.append(live, [Terminated("terminated", reason)])
            return live.state.state
        state = await self._fold(session_id)
        if state.state in ENDED:
            return state.state
        live = Live(state)
        if session_id in self._runner.live:
            raise SessionStateError(f"session {session_id} is being activated; try again")
        self._runner.live[session_id] = live
        try:
            await self._runner.append(
                live,
                [Terminated("terminated", reason)],
                claim=("waiting_input", "waiting_approval", "active"),
            )
        except Exception as error:
            if is_conflict(error):
                raise SessionStateError(
                    f"session {session_id} is running on another worker; try again"
                ) from error
            raise
        finally:
            self._runner.live.pop(session_id, None)
        return live.state.state

    def subscribe(self, session_id: str) -> Subscription:
        """Live events of a session from now on (subscribe before sending a message)."""
        return self._hub.subscribe(session_id)

    async def wait(self, session_id: str, *, seconds: float = 30.0) -> str:
        """Wait until the session is not ``active`` here; its state then."""
        async with asyncio.timeout(seconds):
            while True:
                live = self._runner.live.get(session_id)
                if live is not None and live.task is not None:
                    try:
                        await asyncio.shield(live.task)
                    except asyncio.CancelledError:
                        current = asyncio.current_task()
                        if current is not None and current.cancelling():
                            raise  # ours (the timeout, or the caller gave up), not the session's
                        # The session's task was cancelled (this worker stopping): look again.
                    if live.settled:  # its last state change is durable: no need to read it
                        return live.state.state
                    continue
                row = await self._journal.get(session_id)
                if row is None:
                    raise UnknownSession(session_id)
                if row.state != "active":
                    return row.state
                await asyncio.sleep(0.05)  # running on another worker, or not picked up yet

    async def get(self, session_id: str) -> SessionView:
        row = await self._journal.get(session_id)
        if row is None:
            raise UnknownSession(session_id)
        events = [
            {"seq": e.seq, "created": e.created, **to_json(decode(e.kind, e.payload))}
            for e in await self._journal.read_events(session_id)
        ]
        return SessionView(_summary(row), events)

    async def list_sessions(
        self,
        namespace: str,
        agent: str,
        *,
        limit: int = 100,
        after: str | None = None,
        state: str | None = None,
    ) -> tuple[list[SessionSummary], str | None]:
        rows, cursor = await self._journal.list_sessions(
            namespace, agent, limit=limit, after=after, state=state
        )
        return [_summary(row) for row in rows], cursor

    async def gc(self) -> int:
        """Delete ended sessions older than the retention period; how many."""
        return await self._journal.gc(
            before=self._clock() - self._retention_seconds, states=sorted(ENDED)
        )

    # -- internals -----------------------------------------------------------------------------

    def _agent(self, namespace: str, name: str) -> AgentConfig:
        config = self._agents.get(namespace, name)
        if config is None:
            raise UnknownAgent(namespace, name)
        return config

    async def _fold(self, session_id: str) -> SessionState:
        events = await self._journal.read_events(session_id)
        if not events:
            raise UnknownSession(session_id)
        state = SessionState(session_id)
        for row in events:
            fold(state, decode(row.kind, row.payload), row.seq, row.created)
        return state

    async def _activate(self, session_id: str, expected: str) -> Live:
        if session_id in self._runner.live:
            live = self._runner.live[session_id]
            raise SessionStateError(
                f"session {session_id} is {live.state.state} (running); wait for its turn to end"
            )
        state = await self._fold(session_id)
        if state.state != expected:
            raise SessionStateError(
                f"session {session_id} is {state.state}, not {expected}"
                + (f" ({state.reason})" if state.reason else "")
            )
        self._agent(state.namespace, state.agent)
        if session_id in self._runner.live:  # another activation won the race while we read
            raise SessionStateError(f"session {session_id} is being activated")
        live = Live(state)
        self._runner.live[session_id] = live
        return live

    async def _maintain(self) -> None:
        renew_every = self._lease_seconds / 3
        last_renew = last_gc = self._clock()
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                now = self._clock()
                if not self._journal.single_process and now - last_renew >= renew_every:
                    last_renew = now
                    before = {sid for sid, live in self._runner.live.items() if live.leased}
                    held = await self._journal.renew(self.worker, lease_seconds=self._lease_seconds)
                    for session_id in before - held:
                        self._runner.lost(session_id)
                await self._acquire()
                if now - last_gc >= 3_600:
                    last_gc = now
                    await self.gc()
            except Exception:  # the database may be away for a while; try again next round
                log.exception("agent session maintenance failed; retrying")

    async def _acquire(self) -> None:
        rows = await self._journal.acquire(
            self.worker, lease_seconds=self._lease_seconds, limit=500, now=self._clock()
        )
        for row in rows:
            if row.id in self._runner.live:
                continue
            await self._runner.resume(row.id, self._fold)


def _summary(row: StoredSession) -> SessionSummary:
    return SessionSummary(
        row.id,
        row.namespace,
        row.agent,
        row.state,
        row.created,
        row.updated,
        orjson.loads(row.summary) if row.summary else {},
    )


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_MILLIS_MASK = (1 << 45) - 1


def new_session_id(now: float) -> str:
    """17 characters that sort by creation time (ms, Crockford base32) and then at random
    (40 bits), so listing newest-first is a keyset scan of the primary key."""
    # The 85 bits (45 of milliseconds, 40 random from os.urandom, as secrets uses) as one number,
    # written 10 bits (two characters) a lookup: cheaper than a character at a time or b32encode.
    bits = ((int(now * 1000) & _MILLIS_MASK) << 40) | int.from_bytes(os.urandom(5))
    pairs = _PAIRS
    return (
        _CROCKFORD[bits >> 80]
        + pairs[(bits >> 70) & 1023]
        + pairs[(bits >> 60) & 1023]
        + pairs[(bits >> 50) & 1023]
        + pairs[(bits >> 40) & 1023]
        + pairs[(bits >> 30) & 1023]
        + pairs[(bits >> 20) & 1023]
        + pairs[(bits >> 10) & 1023]
        + pairs[bits & 1023]
    )


__all__ = ["AgentRuntime", "SessionSummary", "SessionView", "StreamEvent", "new_session_id"]
