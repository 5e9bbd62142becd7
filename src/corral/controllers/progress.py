"""Hashing progress in a Model's status: ``status.verification = {bytesDone, bytesTotal}``.

The Model controller hashes a model file in a worker thread, which calls :meth:`report` after
each chunk. ``report`` only reads the clock and, at most once per ``interval``, hands the
numbers to the event loop with ``call_soon_threadsafe``: the hash never waits for the store.
On the loop one writer task writes the newest numbers (a report that arrives while a write is in
flight replaces any older one still waiting), each write based on the object the previous one
returned. The reconciler bases its final status write on :attr:`latest`, which removes the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from corral.api.errors import Conflict
from corral.api.objects import Object
from corral.store.protocol import Store

logger = logging.getLogger(__name__)

FIELD = "verification"


class VerificationProgress:
    """Publishes one Model's hashing progress; create it on the event loop, per reconcile."""

    def __init__(self, store: Store, model: Object, *, interval: float = 0.5) -> None:
        if interval <= 0:
            raise ValueError(f"progress interval must be above 0 seconds (got {interval})")
        self.latest = model
        """The Model as last written here (the reconciler's own read until the first write)."""
        self._store = store
        self._loop = asyncio.get_running_loop()
        self._interval = interval
        self._next_report_at = time.monotonic() + interval  # a quick hash writes nothing
        self._pending: tuple[int, int] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    def report(self, done: int, total: int) -> None:
        """The hash's progress callback; runs in the hashing thread and never blocks."""
        now = time.monotonic()
        if now < self._next_report_at or done >= total:
            return
        self._next_report_at = now + self._interval
        # RuntimeError: the loop has closed (shutdown) while the thread still hashes.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._offer, done, total)

    async def close(self) -> Object:
        """Stop publishing, let a write in flight finish, and return :attr:`latest`."""
        self._closed = True
        if self._writer is not None:
            await self._writer
        return self.latest

    def abandon(self) -> None:
        """Stop at once (the reconcile was cancelled): no further writes."""
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()

    def _offer(self, done: int, total: int) -> None:
        if self._closed:
            return
        self._pending = (done, total)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while self._pending is not None and not self._closed:
            done, total = self._pending
            self._pending = None
            status = dict(self.latest.get("status") or {})
            status[FIELD] = {"bytesDone": done, "bytesTotal": total}
            try:
                self.latest = await self._store.update_status({**self.latest, "status": status})
            except Conflict:
                # Someone else changed the Model; that change requeues it. Progress is best
                # effort: stop publishing rather than fight over the object.
                self._closed = True
            except Exception as error:
                metadata = self.latest.get("metadata") or {}
                logger.warning(
                    "Model %s/%s: verification progress not published: %s",
                    metadata.get("namespace"),
                    metadata.get("name"),
                    error,
                )
                self._closed = True
