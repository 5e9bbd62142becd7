"""LiteLLM's proxy as the peer: one worker, a master key, no database, in its own venv.

The venv (``~/.cache/corral/bench/litellm-venv``) is created on first use with a pinned
``litellm[proxy]`` (and aiohttp and uvloop, which the aiohttp pass-through runs on); corral's
own venv never gets it. LiteLLM's database layer needs Prisma's engine binary, which no
reachable registry serves, so the proxy runs without one: a lighter configuration than
corral's, which keeps the comparison fair to LiteLLM.

The two fake-upstream base URLs become two models, ``chat`` and ``chat-stream``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from peers.fake_upstream import CHAT_MODEL, STREAM_MODEL, NginxUpstream
from peers.processes import Process, answers, free_port, wait_until

LITELLM_VERSION = "1.106.2"
# BENCH_LITELLM_VENV moves it (e.g. to try a fresh install without touching the usual one).
BENCH_VENV = Path(
    os.environ.get("BENCH_LITELLM_VENV")
    or Path.home() / ".cache" / "corral" / "bench" / "litellm-venv"
)
MASTER_KEY = "sk-bench-master-key"


def bench_python() -> Path:
    return BENCH_VENV / "bin" / "python"


def ensure_bench_venv() -> Path:
    """The benchmark venv's Python, creating the venv (minutes, needs PyPI) when missing."""
    python = bench_python()
    probe = [str(python), "-c", "import litellm, aiohttp, uvloop, httptools"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {BENCH_VENV} with litellm[proxy]=={LITELLM_VERSION} (one-time, minutes)")
    BENCH_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(BENCH_VENV)], check=True)
    subprocess.run(
        [
            str(python), "-m", "pip", "install", "-q",
            f"litellm[proxy]=={LITELLM_VERSION}", "aiohttp", "uvloop", "httptools",
        ],
        check=True,
    )  # fmt: skip
    return python


def installed_version(package: str) -> str:
    result = subprocess.run(
        [
            str(bench_python()),
            "-c",
            f"import importlib.metadata as m; print(m.version({package!r}))",
        ],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() or "unknown"


def litellm_config(upstream: NginxUpstream) -> dict[str, object]:
    return {
        "model_list": [
            {
                "model_name": CHAT_MODEL,
                "litellm_params": {
                    "model": f"openai/{CHAT_MODEL}",
                    "api_base": upstream.chat_base,
                    "api_key": "sk-fake-upstream",
                },
            },
            {
                "model_name": STREAM_MODEL,
                "litellm_params": {
                    "model": f"openai/{STREAM_MODEL}",
                    "api_base": upstream.stream_base,
                    "api_key": "sk-fake-upstream",
                },
            },
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"telemetry": False, "drop_params": True},
    }


class LiteLLMProxy:
    """``litellm --config ... --num_workers 1`` pinned to ``cpu``."""

    def __init__(self, upstream: NginxUpstream, cpu: int | None) -> None:
        python = ensure_bench_venv()
        self.version = installed_version("litellm")
        self._workdir = tempfile.TemporaryDirectory(prefix="bench-litellm-")
        config = Path(self._workdir.name) / "config.yaml"
        config.write_text(yaml.safe_dump(litellm_config(upstream)))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            # No fetch of the model price map from GitHub (no internet here), no telemetry.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOG": "ERROR",
        }
        env.pop("DATABASE_URL", None)
        litellm = str(python.with_name("litellm"))
        self.process = Process(
            [litellm, "--config", str(config), "--host", "127.0.0.1", "--port", str(self.port),
             "--num_workers", "1"],
            "litellm",
            cpu,
            env=env,
            cwd=self._workdir.name,
        )  # fmt: skip
        headers = {"authorization": f"Bearer {MASTER_KEY}"}
        wait_until(
            self.process,
            lambda: answers(self.url + "/v1/models", headers=headers, status=200),
            180,
            "ready",
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {MASTER_KEY}"}

    def stop(self) -> None:
        self.process.stop()
        self._workdir.cleanup()
