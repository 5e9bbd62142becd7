"""The vllm runtime runs ``vllm serve`` from PATH and waits for ``/health`` (faked here: no GPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from corral.runtimes import ReplicaState, Supervisor

from .helpers import FAKE_SERVER, Recorder, replica_spec, wait_for, wait_for_event, wait_gone


@pytest.fixture
def vllm_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable = bin_dir / "vllm"
    executable.write_text(
        f"#!{sys.executable}\n"
        "import runpy, sys\n"
        f"sys.argv[0] = {str(FAKE_SERVER)!r}\n"
        f"runpy.run_path({str(FAKE_SERVER)!r}, run_name='__main__')\n"
    )
    executable.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return executable


@pytest.mark.usefixtures("vllm_on_path")
async def test_vllm_replica_serves_and_stops(
    supervisor: Supervisor,
    model_file: Path,
    tmp_path: Path,
    recorder: Recorder,
) -> None:
    argv_file = tmp_path / "argv.json"
    spec = replica_spec(
        model_file.parent,
        runtime="vllm",
        options={"fake_argv_file": str(argv_file), "enforce_eager": True},
        env={"CUDA_VISIBLE_DEVICES": "0"},
    )
    await supervisor.ensure({spec.name: spec})

    status = await wait_for(supervisor, spec.name, lambda s: s.ready)

    port = status.address.rsplit(":", 1)[1]
    assert json.loads(argv_file.read_text()) == [
        "serve",
        str(model_file.parent),
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--served-model-name",
        "fake-model",
        "--fake-argv-file",
        str(argv_file),
        "--enforce-eager",
    ]
    assert any("GET /health" in line for line in supervisor.tail_logs(spec.name, 50))
    async with httpx.AsyncClient(trust_env=False) as client:
        models = await client.get(f"{status.address}/v1/models")
    assert models.json()["data"] == [{"id": "fake-model"}]

    await supervisor.ensure({})
    await wait_for_event(recorder, spec.name, ReplicaState.STOPPED)
    assert status.pid is not None
    await wait_gone(status.pid)
