"""Every acknowledged write survives the writing process being killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from corral.store import Store

WRITER = Path(__file__).with_name("writer_process.py")
ACKNOWLEDGED_BEFORE_KILL = 60


def write_until_killed(url: str) -> list[tuple[str, int]]:
    """Run the writer, SIGKILL it mid-stream, return every write it acknowledged."""
    acknowledged: list[tuple[str, int]] = []
    with subprocess.Popen(
        [sys.executable, str(WRITER), url, "0", "k9"], stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            name, rv = line.split()
            acknowledged.append((name, int(rv)))
            if len(acknowledged) == ACKNOWLEDGED_BEFORE_KILL:
                os.kill(process.pid, signal.SIGKILL)
                break
        # Lines already in the pipe were acknowledged before the kill landed.
        for line in process.stdout:
            name, rv = line.split()
            acknowledged.append((name, int(rv)))
        assert process.wait(timeout=30) == -signal.SIGKILL
    return acknowledged


async def test_acknowledged_writes_survive_kill_9(target: Any):
    acknowledged = await asyncio.wait_for(asyncio.to_thread(write_until_killed, target.url), 90)
    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL
    store: Store = await target.open()
    for name, rv in acknowledged:
        stored = await store.get("Endpoint", "default", name)
        assert stored["metadata"]["resourceVersion"] == str(rv)
    assert await store.current_resource_version() >= acknowledged[-1][1]
    # The store is writable and consistent after the crash: the sequence simply continues.
    created = await store.create({"kind": "Endpoint", "metadata": {"name": "after-crash"}})
    assert int(created["metadata"]["resourceVersion"]) == await store.current_resource_version()
