"""Agent session journals: sessions and their events, on SQLite (one process) or Postgres.

The agent runtime (``corral.agents``) journals every step of every session here. This module
is the shared half: the row shapes, the group committer both backends use, and
:func:`open_session_journal`, which picks the backend from a URL. The runtime sees the store only
through ``corral.agents.journal.JournalStore`` (the server wires one to the other); the store
deals in rows and bytes, never in agent types, because it sits on ``corral.api`` only.

Group commit: :class:`GroupCommitter` keeps one writer task per store. Callers queue an
append and get a future; the writer takes everything queued since its last commit and writes
it in one transaction, so a thousand sessions stepping at once cost a handful of commits, not
a thousand. Appends are applied in the order they were queued; a failed append (its sequence
number is taken, or its session is leased by another worker) fails only that caller and the
later appends of the same session in the batch, so a session's journal never has a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # the backends import this module
    from corral.store.session_journal_postgres import PostgresSessionJournal
    from corral.store.session_journal_sqlite import SqliteSessionJournal

log = logging.getLogger(__name__)

NewEvent = tuple[str, int, str, bytes, float]
"""(session_id, seq, kind, payload, created)"""

TERMINAL_STATES = ("completed", "failed", "terminated", "expired")


class SessionRow(NamedTuple):
    id: str
    namespace: str
    agent: str
    state: str
    owner: str | None
    lease_expires: float | None
    wake_at: float | None
    created: float
    updated: float
    last_seq: int
    summary: bytes


class EventRow(NamedTuple):
    session_id: str
    seq: int
    kind: str
    payload: bytes
    created: float


class SessionConflict(Exception):
    """A write lost a race (sequence number taken, or the lease is another worker's).

    ``corral.agents.journal.JournalConflict`` is what the runtime catches; the server's
    adapter is not needed because the runtime treats any exception with a ``session_id``
    attribute and ``conflict = True`` as a conflict.
    """

    conflict = True

    def __init__(self, session_id: str, message: str) -> None:
        super().__init__(f"session {session_id}: {message}")
        self.session_id = session_id


@dataclass(slots=True)
class Append:
    """One queued append (see ``JournalStore.append`` for the fields)."""

    session_id: str
    events: Sequence[NewEvent]
    owner: str | None
    state: str | None
    summary: bytes | None
    wake_at: float | None
    release: bool
    claim: Sequence[str]
    lease_seconds: float
    future: asyncio.Future[None] = field(repr=False)
    create: SessionRow | None = None
    """A new session: its row is inserted in the same commit as its first events."""

    @property
    def last_seq(self) -> int:
        return self.events[-1][1] if self.events else 0


BatchWriter = Callable[[list[Append]], Awaitable[list[BaseException | None]]]


class GroupCommitter:
    """One writer task: drains the queue and commits each batch with ``write``."""

    def __init__(self, write: BatchWriter, *, max_batch: int = 4_096) -> None:
        self._write = write
        self._max_batch = max_batch
        self.loop = asyncio.get_running_loop()
        """The loop the writer runs on: appends make their futures here (one lookup fewer)."""
        self._queue: list[Append] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._task = self.loop.create_task(self._run(), name="journal-writer")
        self.batches = 0
        self.appends = 0

    def submit(self, item: Append) -> asyncio.Future[None]:
        if self._closed:
            raise RuntimeError("the session journal is closed")
        queue = self._queue
        if not queue:  # else the writer is awake already, or drains the queue before it sleeps
            self._wake.set()
        queue.append(item)
        return item.future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                try:
                    outcomes = await self._write(batch)
                except Exception as error:  # the whole commit failed: every caller learns it
                    log.exception("session journal commit failed")
                    outcomes = [error] * len(batch)
                self.batches += 1
                self.appends += len(batch)
                for item, outcome in zip(batch, outcomes, strict=True):
                    if item.future.done():
                        continue
                    if outcome is None:
                        item.future.set_result(None)
                    else:
                        item.future.set_exception(outcome)
            if self._closed:
                return

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        self._closed = True
        self._wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def fail_followers(batch: Sequence[Append], outcomes: list[BaseException | None]) -> None:
    """After a failed append, the same session's later appends in the batch fail too (their
    sequence numbers would leave a gap)."""
    failed: dict[str, BaseException] = {}
    for index, item in enumerate(batch):
        outcome = outcomes[index]
        if outcome is not None:
            failed.setdefault(item.session_id, outcome)
        elif item.session_id in failed:
            outcomes[index] = SessionConflict(
                item.session_id,
                f"an earlier append in the same commit failed ({failed[item.session_id]})",
            )


def creation(
    session_id: str,
    namespace: str,
    agent: str,
    events: Sequence[NewEvent],
    *,
    state: str,
    owner: str | None,
    lease_seconds: float,
    summary: bytes,
    wake_at: float | None,
    now: float,
    future: Callable[[], asyncio.Future[None]],
) -> Append:
    """The queued append that creates a session (both backends group-commit creations)."""
    last_seq = events[-1][1] if events else 0
    lease = now + lease_seconds if owner else None
    row = SessionRow(
        session_id, namespace, agent, state, owner, lease, wake_at, now, now, last_seq, summary
    )
    return Append(session_id, events, None, None, None, None, False, (), 0.0, future(), row)


def check_page_size(limit: int) -> int:
    if not isinstance(limit, int) or not 1 <= limit <= 1_000:
        raise ValueError(f"session list limit {limit!r}: use 1..1000")
    return limit


async def open_session_journal(url: str) -> SqliteSessionJournal | PostgresSessionJournal:
    """The journal ``url`` names: ``sqlite:///path.db`` (one process; the file is locked) or
    ``postgresql://…`` (any number of worker processes)."""
    from corral.store.session_journal_postgres import PostgresSessionJournal
    from corral.store.session_journal_sqlite import SqliteSessionJournal

    scheme = url.split("://", 1)[0].lower() if isinstance(url, str) and "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        return await PostgresSessionJournal.open(url)
    if scheme == "sqlite":
        path = url.split("://", 1)[1]
        if not path.startswith("/") or len(path) < 2:
            raise ValueError(
                f"session journal URL {url!r}: write sqlite:///relative.db or sqlite:////abs.db"
            )
        return await SqliteSessionJournal.open(path[1:])
    raise ValueError(
        f"session journal URL {url!r}: use sqlite:///path.db or postgresql://user@host/db"
    )


class GroupCommittedJournal:
    """What both backends share: creations and appends queue on one :class:`GroupCommitter`
    (a subclass sets ``_committer`` over its own ``_write_batch``)."""

    _committer: GroupCommitter

    @property
    def committer(self) -> GroupCommitter:
        return self._committer

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
        await self._committer.submit(
            creation(
                session_id,
                namespace,
                agent,
                events,
                state=state,
                owner=owner,
                lease_seconds=lease_seconds,
                summary=summary,
                wake_at=wake_at,
                now=now,
                future=self._committer.loop.create_future,
            )
        )

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
        committer = self._committer
        return committer.submit(
            Append(
                session_id,
                events,
                owner,
                state,
                summary,
                wake_at,
                release,
                claim,
                lease_seconds,
                committer.loop.create_future(),
            )
        )
