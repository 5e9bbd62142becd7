"""Fixtures: one real ``corral up --port 0`` per test module, and the CLI pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import Cli, ServerProcess, clean_env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("corral-up")
    state_dir = root / "state"
    process = ServerProcess(
        ["up", "--port", "0", "--state-dir", str(state_dir)], state_dir, root / "logs"
    ).start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
def cli(server: ServerProcess, tmp_path: Path) -> Cli:
    return Cli(clean_env(CORRAL_STATE_DIR=str(server.state_dir)), tmp_path)
