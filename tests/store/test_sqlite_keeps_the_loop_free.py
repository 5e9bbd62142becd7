"""SQLite specifics: the event loop never waits on another process's lock or on checkpoints."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from corral.store import open_store
from corral.store.sqlite import CHECKPOINT_EVERY


async def test_a_write_blocked_by_another_process_waits_off_the_loop(tmp_path: Path, make: Any):
    path = tmp_path / "state.db"
    store = await open_store(f"sqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        pending = asyncio.create_task(store.create(make("waits")))
        ticks = 0
        for _ in range(5):
            await asyncio.sleep(0.01)  # the loop keeps running other tasks meanwhile
            ticks += 1
        assert ticks == 5
        assert not pending.done()
        other.execute("COMMIT")
        created = await asyncio.wait_for(pending, 10)
        assert created["metadata"]["resourceVersion"] == "1"
    finally:
        other.close()
        await store.close()


async def test_checkpoints_move_the_wal_into_the_database_file(tmp_path: Path, make: Any):
    path = tmp_path / "state.db"
    store = await open_store(f"sqlite:///{path}")
    try:
        empty_size = path.stat().st_size
        for index in range(CHECKPOINT_EVERY * 2):
            await store.create(make(f"o{index}"))
        # The main connection never checkpoints itself; only the worker thread's does.
        for _ in range(200):
            if path.stat().st_size > empty_size:
                break
            await asyncio.sleep(0.05)
        assert path.stat().st_size > empty_size
    finally:
        await store.close()


async def test_in_memory_store_works_for_throwaway_use(make: Any):
    store = await open_store("sqlite:///:memory:")
    try:
        await store.create(make("a"))
        assert [o["metadata"]["name"] for o in (await store.list("Endpoint")).items] == ["a"]
        assert len(await store.history("Endpoint", "default", "a")) == 1
    finally:
        await store.close()
