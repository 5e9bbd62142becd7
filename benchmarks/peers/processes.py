"""Pinned child processes for the benchmarks: start, wait until they answer, stop, explain.

Every process under test is pinned with ``taskset`` so that "one core" means one core on the
2-core machine: :func:`cpu_layout` says which core serves what. A child's output goes to a file
(a pipe nobody reads would block it), and a child that dies early is reported with its last
lines instead of a timeout.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class CpuLayout:
    """Which core runs the server under test, and which the upstream and the load generator."""

    server: int | None
    load: int | None

    @property
    def pinned(self) -> bool:
        return self.server is not None


def cpu_layout() -> CpuLayout:
    """The server under test alone on the first core; nginx and the load on the last one.

    With a single core nothing is pinned (and the tables say so).
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return CpuLayout(None, None)
    return CpuLayout(cpus[0], cpus[-1])


def taskset(command: list[str], cpu: int | None) -> list[str]:
    """``command`` pinned to ``cpu`` (unchanged when ``cpu`` is None)."""
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing_tools(tools: list[str]) -> list[str]:
    """The executables of ``tools`` not found on PATH (nor in /usr/sbin, where nginx lives)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"
    return [tool for tool in tools if shutil.which(tool, path=path) is None]


def tool_path(tool: str) -> str:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"
    found = shutil.which(tool, path=path)
    if found is None:
        raise SystemExit(f"{tool} not found: apt-get install -y nginx wrk")
    return found


class Process:
    """A child process pinned to a core, its output in a temp file."""

    def __init__(
        self,
        command: list[str],
        name: str,
        cpu: int | None = None,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(
            taskset(command, cpu),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self, tail: int = 3000) -> str:
        self.log.flush()
        text = Path(self.log.name).read_bytes().decode(errors="replace")
        return text[-tail:]

    def failure(self) -> str | None:
        """Why the process is gone (with its last output), or None while it runs."""
        if self.process.poll() is None:
            return None
        return f"{self.name} exited with {self.process.returncode}:\n{self.output()}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def wait_until(
    process: Process,
    ready: Callable[[], bool],
    timeout: float,
    what: str,
) -> None:
    """Poll ``ready`` until it is true; fail with the process's output if it dies or times out."""
    deadline = time.monotonic() + timeout
    while True:
        failure = process.failure()
        if failure:
            raise SystemExit(failure)
        try:
            if ready():
                return
        except (httpx.HTTPError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{process.name}: {what} not after {timeout:.0f}s:\n{process.output()}"
            )
        time.sleep(0.1)


def answers(url: str, headers: dict[str, str] | None = None, status: int | None = None) -> bool:
    """True when GET ``url`` answers (with ``status`` when given)."""
    response = httpx.get(url, headers=headers, timeout=2)
    return status is None or response.status_code == status
