"""The SQLite backend: one file, watch woken in-process, short transactions on the event loop.

Where the work runs was measured on the shared 2-core dev box (``benchmarks/store_bench.py``
and ad-hoc runs): a create's transaction costs ~100 µs, and handing it to a worker thread and
back costs about as much again, more when the cores are busy. Sequential creates ran at
3,300-4,500/s on the loop against 1,400-2,300/s on a thread under the same load (6,300 against
3,800-5,200 on a quieter machine). Timer lateness on the loop during writes was comparable
(p99 8-12 ms on the loop, 6-9 ms threaded, 3-4 ms idle): about 1% of commits take ~4 ms on this
box, bare sqlite3 included, and on the loop those land there. So single-object operations and
watch reads run on the loop, each followed by a yield so one busy caller cannot starve the
others, while work whose size the caller controls (unlimited or large lists, apply, history)
runs on one worker thread; one lock hands the connection to one of them at a time. The two
things that could stall the loop for long are kept off it: the WAL checkpoint (which writes and
syncs the database file) runs on the worker thread on its own connection, and a write that
finds the file locked by another process waits on the worker thread.

Durability: WAL with ``synchronous=NORMAL``. A commit that returned survives the process being
killed (``kill -9``) because the WAL is in the OS page cache; power loss or an OS crash may lose
the last commits (``synchronous=FULL`` would cover that at a fifth of the write rate), which is
out of scope for the embedded store.

Watchers in this process are woken right after each commit; writers in other processes sharing
the file are seen within ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

from corral.api.errors import NotFound
from corral.api.objects import Object, ObjectKey
from corral.store.apply import prepare_apply
from corral.store.paging import parse_list_query
from corral.store.protocol import ApplyOutcome, HistoryEntry, ListResult, WatchEvent
from corral.store.selectors import selector_or_none
from corral.store.semantics import normalize_input
from corral.store.sqlite_rows import SqliteDatabase, checkpoint, connect, is_busy
from corral.store.watching import ChangeSignal, follow

T = TypeVar("T")

INLINE_LIST_LIMIT = 500
"""Pages up to this many objects are read on the loop; bigger or unlimited lists on the thread."""
CHECKPOINT_EVERY = 200
"""Write transactions between WAL checkpoints (each writes a handful of 4 KiB pages)."""

# The class defines a ``list`` method (the protocol's name), which shadows the builtin inside it.
_Objects = list[Object]
_Outcomes = list[ApplyOutcome]
_History = list[HistoryEntry]
_Strings = list[str]


class SqliteStore:
    """The embedded store. Open with :meth:`open` (or ``open_store("sqlite:///path.db")``)."""

    def __init__(
        self,
        path: str,
        database: SqliteDatabase,
        executor: ThreadPoolExecutor,
        *,
        poll_interval: float,
        busy_timeout: float,
    ) -> None:
        self.path = path
        self._db = database
        self._executor = executor
        self._poll_interval = poll_interval
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._lock = asyncio.Lock()
        self._signal = ChangeSignal()
        self._closed = False
        self._writes_since_checkpoint = 0
        self._checkpointing: asyncio.Future[None] | None = None
        self._checkpoint_connection: sqlite3.Connection | None = None

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        event_retention: int = 100_000,
        poll_interval: float = 1.0,
        busy_timeout: float = 10.0,
    ) -> SqliteStore:
        """Open (creating the file, its directory and the schema as needed)."""
        if event_retention < 1:
            raise ValueError(f"event_retention must be at least 1, got {event_retention}")
        location = str(path)
        in_memory = location == ":memory:"
        if not in_memory:
            Path(location).parent.mkdir(parents=True, exist_ok=True)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="corral-sqlite")
        try:
            # Opening may wait for another process's lock (schema creation): not on the loop.
            connection = await asyncio.get_running_loop().run_in_executor(
                executor,
                partial(connect, location, busy_timeout=busy_timeout, autocheckpoint=in_memory),
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        # On the loop a lock held by another process must fail fast (then wait on the thread).
        connection.execute("PRAGMA busy_timeout = 0")
        database = SqliteDatabase(connection, event_retention=event_retention)
        return cls(
            location, database, executor, poll_interval=poll_interval, busy_timeout=busy_timeout
        )

    # -- reads -----------------------------------------------------------------------------

    async def get(self, kind: str, namespace: str, name: str) -> Object:
        key = ObjectKey(kind, namespace, name)
        obj = await self._inline(partial(self._db.load, key))
        if obj is None:
            raise NotFound(f"{key} not found")
        return obj

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        query = parse_list_query(kind, namespace, label_selector, limit, continue_token)
        read = partial(self._db.list_page, query)
        if query.limit is not None and query.limit <= INLINE_LIST_LIMIT:
            return await self._inline(read)
        return await self._threaded(read)

    async def history(self, kind: str, namespace: str, name: str) -> _History:
        return await self._threaded(partial(self._db.history, ObjectKey(kind, namespace, name)))

    async def current_resource_version(self) -> int:
        return await self._inline(self._db.head)

    # -- writes ----------------------------------------------------------------------------

    async def create(self, obj: Object, *, actor: str = "") -> Object:
        return self._after_write(
            await self._inline(partial(self._db.create, normalize_input(obj), actor))
        )

    async def update(self, obj: Object, *, actor: str = "") -> Object:
        return self._after_write(
            await self._inline(partial(self._db.update, normalize_input(obj), actor))
        )

    async def update_status(self, obj: Object) -> Object:
        return self._after_write(
            await self._inline(partial(self._db.update_status, normalize_input(obj)))
        )

    async def delete(
        self,
        kind: str,
        namespace: str,
        name: str,
        *,
        actor: str = "",
        resource_version: str | None = None,
    ) -> Object:
        key = ObjectKey(kind, namespace, name)
        return self._after_write(
            await self._inline(partial(self._db.delete, key, actor, resource_version))
        )

    async def apply(
        self,
        objects: _Objects,
        *,
        actor: str = "",
        dry_run: bool = False,
        prune_selector: str | None = None,
        prune_kinds: _Strings | None = None,
    ) -> _Outcomes:
        request = prepare_apply(objects, prune_selector, prune_kinds)
        return self._after_write(
            await self._threaded(partial(self._db.apply, request, actor=actor, dry_run=dry_run))
        )

    # -- watch -----------------------------------------------------------------------------

    def watch(
        self,
        kind: str | None = None,
        namespace: str | None = None,
        *,
        resource_version: int | None = None,
        label_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        selector = selector_or_none(label_selector)
        return follow(
            lambda after: self._inline(partial(self._db.read_events, after, kind, namespace)),
            self.current_resource_version,
            self._signal,
            lambda: self._closed,
            resource_version=resource_version,
            selector=selector,
            poll_interval=self._poll_interval,
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._signal.fire()
        async with self._lock:
            if self._checkpointing is not None:
                await asyncio.wait([self._checkpointing])
            loop = asyncio.get_running_loop()
            # Closing the last connection checkpoints the WAL: file I/O, so on the thread.
            await loop.run_in_executor(self._executor, self._close_connections)
        self._executor.shutdown(wait=True)

    # -- where the work runs ---------------------------------------------------------------

    async def _inline(self, operation: Callable[[], T]) -> T:
        """Run one short transaction on the loop, then let other tasks run."""
        self._check_open()
        await self._lock.acquire()  # free unless a threaded operation holds the connection
        try:
            self._check_open()  # close() may have taken the lock first
            result = operation()
        except sqlite3.OperationalError as error:
            self._lock.release()
            if not is_busy(error):
                raise
            # Another process holds the file's write lock: wait for it off the loop.
            return await self._threaded(operation)
        except BaseException:
            self._lock.release()
            raise
        self._lock.release()
        await asyncio.sleep(0)
        return result

    async def _threaded(self, operation: Callable[[], T]) -> T:
        """Run a transaction on the worker thread, waiting for other processes' locks there."""
        self._check_open()
        await self._lock.acquire()
        loop = asyncio.get_running_loop()
        try:
            self._check_open()  # close() may have taken the lock first
            work = self._executor.submit(self._with_busy_wait, operation)
        except BaseException:
            self._lock.release()
            raise
        # Released when the thread is done with the connection, even if our caller is
        # cancelled meanwhile: the transaction finishes either way, and until it has, the
        # connection is not the loop's to use.
        work.add_done_callback(lambda _: loop.call_soon_threadsafe(self._lock.release))
        return await asyncio.wrap_future(work)

    def _with_busy_wait(self, operation: Callable[[], T]) -> T:
        connection = self._db.connection
        connection.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        try:
            return operation()
        finally:
            connection.execute("PRAGMA busy_timeout = 0")

    def _after_write(self, outcome: tuple[T, bool]) -> T:
        result, wrote = outcome
        if wrote:
            self._signal.fire()
            self._writes_since_checkpoint += 1
            if self._writes_since_checkpoint >= CHECKPOINT_EVERY:
                self._start_checkpoint()
        return result

    def _start_checkpoint(self) -> None:
        if self._checkpointing is not None or self.path == ":memory:" or self._closed:
            return
        self._writes_since_checkpoint = 0
        loop = asyncio.get_running_loop()
        self._checkpointing = loop.run_in_executor(self._executor, self._checkpoint_on_thread)
        self._checkpointing.add_done_callback(self._checkpoint_done)

    def _checkpoint_on_thread(self) -> None:
        if self._checkpoint_connection is None:
            self._checkpoint_connection = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        checkpoint(self._checkpoint_connection)

    def _checkpoint_done(self, future: asyncio.Future[None]) -> None:
        self._checkpointing = None
        # A failed checkpoint is retried by the next one; the WAL keeps every commit meanwhile.
        if not future.cancelled() and future.exception() is not None:
            self._writes_since_checkpoint = CHECKPOINT_EVERY // 2

    def _close_connections(self) -> None:
        if self._checkpoint_connection is not None:
            self._checkpoint_connection.close()
        self._db.connection.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the store at {self.path} is closed")
