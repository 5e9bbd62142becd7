"""Fixtures for supervisor tests: a fake model file, a status recorder, a quick supervisor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral.runtimes import Supervisor

from .helpers import QUICK, Recorder, fake_providers


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF fake weights")
    return path


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def supervisor(tmp_path: Path, recorder: Recorder) -> AsyncIterator[Supervisor]:
    sup = Supervisor(tmp_path / "state", recorder, providers=fake_providers(), settings=QUICK)
    yield sup
    await sup.stop_all()
