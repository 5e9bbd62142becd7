"""The storage seam of the agent runtime: what a session journal store must do.

``corral.agents`` never imports ``corral.store`` (layers: the runtime sits beside the gateway,
above the libraries). The composition root (``corral.server``) opens a store from
``corral.store.session_journal`` and hands it to :class:`corral.agents.runtime.AgentRuntime`;
both sides agree only on this protocol, which deals in plain rows: strings, numbers and the
orjson bytes of each event's payload. Typed events live in :mod:`corral.agents.events`.

Contract every implementation keeps (the store's tests check it on SQLite and Postgres):

- ``append`` is exactly-once per ``(session_id, seq)``: a second write of a sequence number
  fails with :class:`JournalConflict` and writes nothing of that call (all-or-nothing per call).
- Appends of concurrent callers are group-committed: one transaction for everything queued
  while the previous commit ran; each caller's awaitable resolves when its rows are durable.
- Appends complete in the order they were made (one writer per store).
- A lease (``owner``, ``lease_expires``) marks the worker that runs a session; ``acquire``
  hands out runnable sessions whose lease is free or lapsed, ``renew`` extends a worker's
  leases and says which it still holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Protocol

NewEvent = tuple[str, int, str, bytes, float]
"""(session_id, seq, kind, payload, created) of an event to append; seq starts at 1."""


class JournalConflict(Exception):
    """An append lost a race: the sequence number is taken, or the session's lease belongs to
    another worker (the session is no longer this worker's to run). A store may raise its own
    exception type instead, marked with a true ``conflict`` attribute (see :func:`is_conflict`):
    the store layer cannot import this one."""

    conflict = True

    def __init__(self, session_id: str, message: str) -> None:
        super().__init__(f"session {session_id}: {message}")
        self.session_id = session_id


def is_conflict(error: BaseException) -> bool:
    return getattr(error, "conflict", False) is True


class StoredEvent(Protocol):
    """One journal row."""

    @property
    def session_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def created(self) -> float: ...


class StoredSession(Protocol):
    """One session row (times are Unix seconds)."""

    @property
    def id(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def agent(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def owner(self) -> str | None: ...
    @property
    def lease_expires(self) -> float | None: ...
    @property
    def wake_at(self) -> float | None: ...
    @property
    def created(self) -> float: ...
    @property
    def updated(self) -> float: ...
    @property
    def last_seq(self) -> int: ...
    @property
    def summary(self) -> bytes: ...


class JournalStore(Protocol):
    """Sessions and their events; see the module docstring for the contract."""

    @property
    def single_process(self) -> bool:
        """True when no other process can share this store (SQLite holds a file lock), so
        leases of earlier, dead processes are free at once."""
        ...

    async def create(
        self,
        session_id: str,
        namespace: str,
        agent: str,
        events: Sequence[NewEvent],
        *,
        state: str,
        owner: str | None,
        lease_seconds: float,
        summary: bytes = b"",
        wake_at: float | None = None,
        now: float,
    ) -> None:
        """A new session row (leased to ``owner`` when set) and its first events, in one
        transaction. A taken id is a :class:`JournalConflict`."""
        ...

    def append(
        self,
        session_id: str,
        events: Sequence[NewEvent],
        *,
        owner: str | None = None,
        state: str | None = None,
        summary: bytes | None = None,
        wake_at: float | None = None,
        release: bool = False,
        claim: Sequence[str] = (),
        lease_seconds: float = 0.0,
    ) -> Awaitable[None]:
        """Queue ``events`` for the next group commit; await the result for durability.

        ``state``/``summary``/``wake_at`` update the session row in the same transaction (a
        ``wake_at`` of 0 clears it). ``owner`` fences the write: it fails unless ``owner``
        holds the lease. ``claim`` (states) instead takes the lease for ``owner`` when the
        session is in one of those states and no live worker holds it (activation of a
        passivated session). ``release`` drops the lease after writing (passivation, end).
        """
        ...

    async def read_events(self, session_id: str, after_seq: int = 0) -> Sequence[StoredEvent]:
        """The session's events with ``seq > after_seq``, in order."""
        ...

    async def get(self, session_id: str) -> StoredSession | None: ...

    async def list_sessions(
        self,
        namespace: str,
        agent: str,
        *,
        limit: int = 100,
        after: str | None = None,
        state: str | None = None,
    ) -> tuple[Sequence[StoredSession], str | None]:
        """One page of an agent's sessions, newest first, and the cursor of the next page
        (``None`` on the last). Keyset paging: a page costs the same wherever it is."""
        ...

    async def acquire(
        self, worker: str, *, lease_seconds: float, limit: int, now: float
    ) -> Sequence[StoredSession]:
        """Lease up to ``limit`` sessions that need a worker: ``active`` ones nobody live holds,
        and passivated ones whose ``wake_at`` is due (a timeout to act on)."""
        ...

    async def renew(self, worker: str, *, lease_seconds: float) -> set[str]:
        """Extend every lease ``worker`` holds; the ids it still holds."""
        ...

    async def release(self, worker: str, session_ids: Sequence[str]) -> None:
        """Give leases back without changing the sessions (shutdown)."""
        ...

    async def gc(self, *, before: float, states: Sequence[str], limit: int = 10_000) -> int:
        """Delete sessions in ``states`` last updated before ``before``, with their events;
        how many were deleted."""
        ...

    async def close(self) -> None: ...
