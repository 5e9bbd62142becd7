"""The writer side: :class:`AuditLog` appends events with group commit and signs checkpoints.

``append`` queues the event and waits; ``submit`` queues it and returns at once (the request
path's way in: nothing there waits for a commit). One writer task takes everything queued (up to
``max_batch``) and commits it as one transaction, so a burst of concurrent appends costs one
commit (and one fsync) instead of one each. A checkpointer task signs the Merkle root every
``checkpoint_every`` records or ``checkpoint_interval`` seconds, whichever comes first, and once
more on close, so a truncation of anything written before the last checkpoint is caught.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from time import time_ns

from corral.audit.merkle import MerkleAccumulator
from corral.audit.record import AuditEvent, AuditRecord, seal_batch
from corral.audit.signing import Checkpoint, SigningKey
from corral.audit.storage import AuditStorage, ChainHead

_Pending = tuple[AuditEvent, str, "asyncio.Future[int] | None"]  # None: submitted, not awaited
log = logging.getLogger(__name__)


_formatted_second: tuple[int, str] = (-1, "")
"""The whole second last formatted and its ``YYYY-MM-DDTHH:MM:SS.`` prefix (one tuple, so a
reader on another thread never pairs a second with another second's prefix)."""


def now_rfc3339() -> str:
    """Now as ``2026-01-31T12:00:00.123456Z`` (what ``datetime.isoformat`` writes, in UTC).

    Every request's record is stamped: the date and time of day are formatted once per second
    and the microseconds appended (a quarter of what ``datetime.now().isoformat()`` costs).
    """
    global _formatted_second
    second, micros = divmod(time_ns() // 1000, 1_000_000)
    cached_second, prefix = _formatted_second
    if cached_second != second:
        moment = datetime.fromtimestamp(second, UTC).replace(tzinfo=None)
        prefix = moment.isoformat(timespec="seconds") + "."
        _formatted_second = (second, prefix)
    return f"{prefix}{micros:06d}Z"


class AuditLogClosed(RuntimeError):
    """``append`` after ``close``."""


class AuditLog:
    """Open with :meth:`open`; the log does not own ``storage`` (close that yourself after)."""

    def __init__(
        self,
        storage: AuditStorage,
        signing_key: SigningKey,
        *,
        checkpoint_every: int,
        checkpoint_interval: float,
        max_batch: int,
    ) -> None:
        if checkpoint_every < 1 or max_batch < 1 or checkpoint_interval <= 0:
            raise ValueError(
                "audit log: checkpoint_every and max_batch must be at least 1 and "
                f"checkpoint_interval positive (got {checkpoint_every}, {max_batch}, "
                f"{checkpoint_interval})"
            )
        self.storage = storage
        self.signing_key = signing_key
        self._checkpoint_every = checkpoint_every
        self._checkpoint_interval = checkpoint_interval
        self._max_batch = max_batch
        # A deque and an event rather than an asyncio.Queue: every request submits one event,
        # and the queue's put and get cost a microsecond more between them.
        self._queue: deque[_Pending | None] = deque()  # None: stop
        self._queued = asyncio.Event()  # set when the writer may find something queued
        self._tree = MerkleAccumulator()
        self._checkpoint_lock = asyncio.Lock()
        self._checkpoint_wanted = asyncio.Event()
        self._last_checkpoint_size = 0
        self._written_size = 0
        self._closed = False
        self.lost = 0
        """Submitted events whose batch failed to commit (each failure is logged)."""
        self._writer: asyncio.Task[None] | None = None
        self._checkpointer: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        storage: AuditStorage,
        signing_key: SigningKey,
        *,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
        max_batch: int = 1000,
    ) -> AuditLog:
        log = cls(
            storage,
            signing_key,
            checkpoint_every=checkpoint_every,
            checkpoint_interval=checkpoint_interval,
            max_batch=max_batch,
        )
        last = await storage.last_checkpoint()
        log._last_checkpoint_size = last.size if last is not None else 0
        log._written_size = (await storage.head()).size
        log._writer = asyncio.create_task(log._write_batches(), name="audit-writer")
        log._checkpointer = asyncio.create_task(log._checkpoint_loop(), name="audit-checkpoints")
        return log

    async def append(self, event: AuditEvent) -> int:
        """Record ``event``; return its seq once the batch holding it has committed. A caller
        cancelled while waiting may still find its event recorded (the batch is not undone)."""
        if self._closed:
            raise AuditLogClosed("audit log is closed")
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._put((event, now_rfc3339(), done))
        return await done

    def submit(self, event: AuditEvent) -> None:
        """Queue ``event`` and return at once; it commits with the next batch. A batch that
        fails to commit is logged and counted in ``lost`` (nobody waits to hear it)."""
        if self._closed:
            raise AuditLogClosed("audit log is closed")
        self._put((event, now_rfc3339(), None))

    def _put(self, item: _Pending | None) -> None:
        self._queue.append(item)
        if not self._queued.is_set():
            self._queued.set()

    @property
    def queued(self) -> int:
        """Events waiting for the writer."""
        return len(self._queue)

    async def checkpoint(self) -> Checkpoint | None:
        """Sign the root over every record committed so far; None while the log is empty.
        When nothing was added since the last checkpoint, that one is returned."""
        async with self._checkpoint_lock:
            head = await self.storage.head()
            last = await self.storage.last_checkpoint()
            if last is not None and last.size >= head.size:
                self._last_checkpoint_size = last.size
                return last
            if head.size == 0:
                return None
            await self._catch_up(head)
            checkpoint = self.signing_key.sign(head.size, self._tree.root(), now_rfc3339())
            await self.storage.add_checkpoint(checkpoint)
            self._last_checkpoint_size = head.size
            return checkpoint

    async def close(self) -> None:
        """Commit what is queued, sign a last checkpoint, stop the tasks."""
        if self._closed:
            return
        self._closed = True
        self._put(None)
        if self._writer is not None:
            await self._writer
        if self._checkpointer is not None:
            # Let a checkpoint in progress finish rather than cancel it mid-query: a query
            # cancelled inside a pooled asyncpg connection could leave the pool waiting on its
            # reset, and close()'s own checkpoint below then never got a connection.
            self._checkpoint_wanted.set()
            await self._checkpointer
        await self.checkpoint()

    async def _catch_up(self, head: ChainHead) -> None:
        # Stored hashes feed the tree; a tampered hash there makes this checkpoint's root
        # disagree with the records, which verify() reports.
        if self._tree.size < head.size:
            for leaf in await self.storage.leaf_hashes(self._tree.size, head.size):
                self._tree.push(leaf)
        if self._tree.size != head.size:
            raise RuntimeError(
                f"audit log: expected {head.size} stored hashes, found {self._tree.size}; "
                "run verify()"
            )

    async def _write_batches(self) -> None:
        while True:
            queue = self._queue
            while not queue:
                self._queued.clear()  # the loop's one thread: no put can slip in between
                await self._queued.wait()
            batch: list[_Pending | None] = [queue.popleft()]
            while queue and len(batch) < self._max_batch:
                batch.append(queue.popleft())
            pending = [item for item in batch if item is not None]
            if pending:
                await self._commit(pending)
            if len(pending) < len(batch):  # close() queued None after every append it allows
                return

    async def _commit(self, pending: Sequence[_Pending]) -> None:
        stamped = [(event, time) for event, time, _ in pending]

        def build(head: ChainHead) -> list[AuditRecord]:
            return seal_batch(stamped, next_seq=head.size, last_hash=head.last_hash)

        try:
            records = await self.storage.append(build)
        except Exception as error:  # every waiter hears why its batch did not commit
            unheard = 0
            for _, _, done in pending:
                if done is None:
                    unheard += 1
                elif not done.done():
                    done.set_exception(error)
            if unheard:
                self.lost += unheard
                log.error("audit log: %d submitted events not recorded: %s", unheard, error)
            return
        for record, (_, _, done) in zip(records, pending, strict=True):
            if done is not None and not done.done():
                done.set_result(record.seq)
        self._written_size = records[-1].seq + 1
        if self._written_size - self._last_checkpoint_size >= self._checkpoint_every:
            self._checkpoint_wanted.set()

    async def _checkpoint_loop(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._checkpoint_wanted.wait(), self._checkpoint_interval)
            self._checkpoint_wanted.clear()
            if self._closed:
                return  # close() signs the last checkpoint itself
            if self._written_size > self._last_checkpoint_size:
                try:
                    await self.checkpoint()
                except Exception:  # the next round retries; appends keep the chain meanwhile
                    log.exception("audit checkpoint failed")
