"""One real ``corral up -f examples/quickstart.yaml`` for the whole serving suite.

It is started the first time a test asks for it (the quick, in-process tests never do) and
serves every test after that: real llama.cpp replicas of SmolLM2-135M behind the real gateway.
Tests that add Endpoints remove them again so the next one starts from the quickstart stack.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import QUICKSTART, Corral, is_ready


@pytest.fixture(scope="session")
def corral(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    root = tmp_path_factory.mktemp("corral-serving")
    args = ["--log-level", "info", "-f", str(QUICKSTART)]  # info: logs are checked for secrets
    server = Corral(root / "state", root / "logs", args=args).start()
    try:
        server.wait_ready()
        server.wait_for("endpoints", "chat", is_ready)
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.stderr
