"""Records of running children, so a supervisor that died does not leave servers behind.

Each child gets ``STATE_DIR/runtimes/<replica>.json`` (pid, start time, command) while it
runs. A new supervisor kills every recorded process that is still alive with the same start
time (the pid alone could have been reused by an unrelated process), and adopts nothing:
an orphan's port, logs and state are unknown, so starting afresh is the only safe choice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from pathlib import Path

from corral.runtimes.process import Child, process_start_time, signal_group

_log = logging.getLogger(__name__)


def record_path(records_dir: Path, replica: str) -> Path:
    return records_dir / f"{replica}.json"


def write_record(records_dir: Path, replica: str, child: Child) -> None:
    if child.start_time is None:
        return  # already exited: nothing that could be orphaned
    path = record_path(records_dir, replica)
    body = {
        "replica": replica,
        "pid": child.pid,
        "startTime": child.start_time,
        "command": list(child.argv),
    }
    # Written whole then renamed, so a crash mid-write never leaves a half record to misread.
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(body))
    os.replace(partial, path)


def remove_record(records_dir: Path, replica: str) -> None:
    record_path(records_dir, replica).unlink(missing_ok=True)


async def kill_orphans(records_dir: Path, grace: float) -> list[int]:
    """Kill the still-running processes recorded in ``records_dir``; the pids killed.

    SIGTERM first, SIGKILL after ``grace`` seconds; every record is gone afterwards.
    """
    victims = _live_recorded_processes(records_dir)
    for pid in victims:
        signal_group(pid, signal.SIGTERM)
    await _wait_gone(victims, grace)
    for pid in victims:
        # Every child leads its own process group (see process.py), so the group also
        # reaches workers that outlived their leader.
        signal_group(pid, signal.SIGKILL)
    await _wait_gone(victims, grace)
    _forget_records(records_dir)
    return victims


def _forget_records(records_dir: Path) -> None:
    for path in records_dir.glob("*.json"):
        path.unlink(missing_ok=True)


def _live_recorded_processes(records_dir: Path) -> list[int]:
    pids: list[int] = []
    for path in sorted(records_dir.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            pid, start_time = int(record["pid"]), int(record["startTime"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            _log.warning("ignoring unreadable runtime record %s: %s", path, error)
            continue
        if process_start_time(pid) == start_time:
            _log.warning(
                "stopping orphaned runtime %s (pid %d) left by a previous supervisor: %s",
                record.get("replica", path.stem),
                pid,
                " ".join(map(str, record.get("command", []))),
            )
            pids.append(pid)
    return pids


async def _wait_gone(pids: list[int], within: float) -> None:
    # Orphans are not our children, so there is no wait(); poll until they are gone.
    deadline = time.monotonic() + within
    while any(process_start_time(pid) is not None for pid in pids):
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(0.05)
