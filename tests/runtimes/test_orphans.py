"""A new supervisor kills the model servers a crashed one left running, and only those."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from corral.runtimes import Supervisor
from corral.runtimes.process import process_start_time

from .helpers import FAKE_SERVER, QUICK

CRASHING_SUPERVISOR = Path(__file__).with_name("crashing_supervisor.py")


async def _orphan_from_a_crashed_supervisor(state_dir: Path, model_file: Path) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CRASHING_SUPERVISOR),
        str(state_dir),
        str(model_file),
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await process.communicate()
    assert process.returncode == 1
    return int(output.decode().strip())


async def test_new_supervisor_kills_servers_left_by_a_crashed_one(
    tmp_path: Path, model_file: Path
) -> None:
    state_dir = tmp_path / "state"
    orphan = await _orphan_from_a_crashed_supervisor(state_dir, model_file)
    assert process_start_time(orphan) is not None
    record = json.loads((state_dir / "runtimes" / "default.chat.fake.0.json").read_text())
    assert record["pid"] == orphan
    assert record["startTime"] == process_start_time(orphan)
    assert record["command"][:2] == [sys.executable, str(FAKE_SERVER)]

    supervisor = Supervisor(state_dir, settings=QUICK)
    killed = await supervisor.start()

    assert killed == [orphan]
    assert process_start_time(orphan) is None
    assert list((state_dir / "runtimes").iterdir()) == []
    assert supervisor.statuses() == []
    await supervisor.stop_all()


async def test_record_of_a_reused_pid_is_dropped_without_killing(tmp_path: Path) -> None:
    records = tmp_path / "state" / "runtimes"
    records.mkdir(parents=True)
    me = os.getpid()
    start_time = process_start_time(me)
    assert start_time is not None
    # Same pid, different start time: the recorded server is gone and the pid was reused.
    (records / "old.json").write_text(json.dumps({"pid": me, "startTime": start_time - 1}))
    (records / "garbage.json").write_text("{not json")

    async with Supervisor(tmp_path / "state", settings=QUICK) as supervisor:
        assert await supervisor.start() == []

    assert list(records.iterdir()) == []
