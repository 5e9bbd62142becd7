"""Driving the real ``corral`` executable: server processes and one-shot CLI calls."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

CORRAL = str(Path(sys.executable).with_name("corral"))
CLI_TIMEOUT_S = 60
START_TIMEOUT_S = 60  # generous: the machine is shared; a hang still fails the test


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any CORRAL_* settings of the caller's, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORRAL_")}
    env.update(extra)
    return env


@dataclass
class Cli:
    """Runs ``corral ARGS`` as a subprocess against one state dir."""

    env: dict[str, str]
    cwd: Path

    def __call__(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [CORRAL, *args],
            env=self.env,
            cwd=self.cwd,
            input=input,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self(*args, input=input)
        assert result.returncode == 0, f"corral {' '.join(args)}: {result.stderr}"
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json"))


@dataclass
class ServerProcess:
    """A ``corral up`` / ``corral serve`` subprocess; its output goes to files in ``log_dir``."""

    args: list[str]
    state_dir: Path
    log_dir: Path
    env: dict[str, str] = field(default_factory=clean_env)
    process: subprocess.Popen[bytes] | None = None
    _logs: list[IO[bytes]] = field(default_factory=list)

    def start(self) -> ServerProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stdout = (self.log_dir / "stdout.log").open("wb")
        stderr = (self.log_dir / "stderr.log").open("wb")
        self._logs = [stdout, stderr]
        self.process = subprocess.Popen(
            [CORRAL, *self.args], env=self.env, stdout=stdout, stderr=stderr
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def stdout(self) -> str:
        return (self.log_dir / "stdout.log").read_text()

    @property
    def stderr(self) -> str:
        return (self.log_dir / "stderr.log").read_text()

    def wait_ready(self) -> str:
        """The URL once ``server.json`` names this process and ``/readyz`` answers 200."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        info_path = self.state_dir / "server.json"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"corral exited with {self.process.returncode}: {self.stderr}")
            info = _read_json(info_path)
            if info and info.get("pid") == self.pid:
                url = str(info["url"])
                try:
                    if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                        return url
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"corral did not become ready: {self.stderr}")

    def stop(self, signum: int | None = signal.SIGTERM) -> int:
        """Signal the process (None: let it end by itself), wait, close its logs; its exit code."""
        assert self.process is not None
        try:
            if signum is not None and self.process.poll() is None:
                self.process.send_signal(signum)
            return self.process.wait(timeout=CLI_TIMEOUT_S)
        finally:
            for log in self._logs:
                log.close()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write(directory: Path, files: dict[str, str]) -> Path:
    """Write ``{relative path: text}`` under ``directory``; returns the directory."""
    for relative, text in files.items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return directory


def model(name: str, *, labels: str = "{}", source: str | None = None) -> str:
    return (
        "apiVersion: corral.dev/v1alpha1\nkind: Model\n"
        f"metadata: {{name: {name}, labels: {labels}}}\n"
        f"spec: {{source: '{source or f'file:///models/{name}.gguf'}'}}\n"
    )


def endpoint(name: str, model_name: str, *, replicas: int = 1, labels: str = "{}") -> str:
    return (
        "apiVersion: corral.dev/v1alpha1\nkind: Endpoint\n"
        f"metadata: {{name: {name}, labels: {labels}}}\n"
        f"spec:\n  models: [{{model: {model_name}}}]\n  replicas: {replicas}\n"
        "  runtime: {type: openai, baseURL: 'http://127.0.0.1:9/v1'}\n"
    )
