"""While a model file is hashed, its Model shows how far it got; the field goes once verified."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from corral.api.validation import validate_object
from corral.controllers import model_controller
from corral.controlplane import Manager
from corral.models import inspect_model
from corral.store import Store, open_store

from .helpers import QUICKSTART_DIGEST, condition, model

SLOW_DISK_S_PER_CHUNK = 0.006  # ~94 chunks of 1 MiB: about half a second of hashing


def slow_disk_inspect(*args: Any, progress: Any = None, **options: Any) -> Any:
    """The real inspection, with each 1 MiB chunk taking a little longer, as on a slow disk."""

    def slowed(done: int, total: int) -> None:
        time.sleep(SLOW_DISK_S_PER_CHUNK)
        progress(done, total)

    return inspect_model(*args, progress=slowed, **options)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'corral.db'}")
    manager = Manager(opened, identity="test", registry=CollectorRegistry())
    manager.add(
        model_controller(
            opened, digest_cache_dir=None, progress_interval=0.1, inspect=slow_disk_inspect
        )
    )
    stop = asyncio.Event()
    running = asyncio.create_task(manager.run(stop))
    try:
        yield opened
    finally:
        stop.set()
        await running
        await opened.close()


async def test_progress_is_published_during_hashing_and_removed_when_verified(store: Store):
    seen: list[dict[str, int]] = []
    final: dict[str, Any] = {}

    async def follow() -> None:
        async with contextlib.aclosing(store.watch("Model")) as events:
            async for event in events:
                status = event.object.get("status") or {}
                if "verification" in status:
                    seen.append(status["verification"])
                elif condition(event.object, "Ready") == "True":
                    final.update(event.object)
                    return

    watcher = asyncio.create_task(follow())
    await asyncio.sleep(0.1)  # the watch is open before the Model exists
    await store.apply([validate_object(model("small", digest=QUICKSTART_DIGEST))])
    await asyncio.wait_for(watcher, timeout=60)

    assert seen, "no progress was published while hashing"
    total = final["status"]["sizeBytes"]
    assert {entry["bytesTotal"] for entry in seen} == {total}
    done = [entry["bytesDone"] for entry in seen]
    assert done == sorted(done)
    assert all(0 < value < total for value in done)
    assert "verification" not in final["status"]
    assert condition(final, "Verified") == "True"
