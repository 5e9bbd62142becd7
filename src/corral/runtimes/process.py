"""Child processes of the supervisor: spawn into a process group, stop the whole group.

Each runtime runs in its own session (and so its own process group), so stopping a replica
also stops the workers a server forks (vLLM's engine processes hold GPU memory). Output goes
straight to the replica's log file: no pipes for the supervisor to drain, and a slow
supervisor never blocks a server writing logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path


def free_loopback_port() -> int:
    """A port the kernel just called free on 127.0.0.1 (the child may still lose a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def process_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (clock ticks since boot), or None if it is gone.

    A pid and its start time together name one process; a reused pid gets a new start time.
    Zombies count as gone: they hold no resources and cannot be signalled into exiting.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; fields after it do not.
    fields = stat[stat.rfind(")") + 2 :].split()
    if not fields or fields[0] == "Z":
        return None
    return int(fields[19])


def signal_group(pgid: int, signum: signal.Signals) -> None:
    """Send ``signum`` to a process group, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


class Child:
    """One running server process; its pid is also its process group id."""

    def __init__(self, process: asyncio.subprocess.Process, argv: Sequence[str]) -> None:
        self._process = process
        self.argv = tuple(argv)
        self.pid = process.pid
        self.start_time = process_start_time(process.pid)
        # Created once so several waiters can share it; it finishes when the child is reaped.
        self.exited: asyncio.Task[int] = asyncio.ensure_future(process.wait())

    @classmethod
    async def spawn(cls, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> Child:
        """Start ``argv`` with stdout and stderr appended to ``log_path``; raises OSError."""
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd,
                stderr=asyncio.subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,
            )
        finally:
            # The child holds its own copy; keeping ours would leak one fd per start.
            os.close(log_fd)
        return cls(process, argv)

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def stop(self, grace: float) -> int:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds; the exit code."""
        if not self.exited.done():
            signal_group(self.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.exited), grace)
            except TimeoutError:
                signal_group(self.pid, signal.SIGKILL)
        code = await self.exited
        # Workers the server forked may outlive it; they share its process group.
        signal_group(self.pid, signal.SIGKILL)
        return code
