"""``corral up -f`` with a stack that cannot serve: it says what failed and why, and keeps serving.

A wrong digest fails at once (the Model controller's DigestMismatch is final until something
changes); a replica that keeps crashing is reported at the wait timeout with its last log lines.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from .helpers import Cli, ServerProcess, clean_env, write

pytestmark = pytest.mark.slow

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
GOOD_DIGEST = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
WRONG_DIGEST = "sha256:" + "0" * 64
REPORT_TIMEOUT_S = 60
KEEPS_SERVING = "corral keeps serving at "


def up_with(tmp_path: Path, stack: Path, *extra: str) -> ServerProcess:
    state_dir = tmp_path / "state"
    args = ["up", "--port", "0", "--state-dir", str(state_dir), "-f", str(stack), *extra]
    return ServerProcess(args, state_dir, tmp_path / "up").start()


def wait_for_report(server: ServerProcess) -> str:
    deadline = time.monotonic() + REPORT_TIMEOUT_S
    while KEEPS_SERVING not in server.stdout:
        assert time.monotonic() < deadline, server.stdout + server.stderr
        assert server.process is not None
        assert server.process.poll() is None, server.stderr
        time.sleep(0.1)
    return server.stdout


def test_a_wrong_digest_is_reported_clearly_and_corral_keeps_serving(tmp_path: Path) -> None:
    text = QUICKSTART.read_text()
    assert GOOD_DIGEST in text
    stack = write(tmp_path / "stack", {"bad.yaml": text.replace(GOOD_DIGEST, WRONG_DIGEST)})
    server = up_with(tmp_path, stack / "bad.yaml")
    try:
        url = server.wait_ready()
        out = wait_for_report(server)
        assert "✗ model/smollm2-135m failed: DigestMismatch" in out
        assert f"the Model expects {WRONG_DIGEST} but the file is {GOOD_DIGEST}" in out
        assert "✗ endpoint/chat failed: ModelNotReady" in out
        assert f"{KEEPS_SERVING}{url}" in out
        assert "corral chat" not in out

        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        cli = Cli(clean_env(CORRAL_STATE_DIR=str(server.state_dir)), tmp_path)
        model = cli.json("get", "model", "smollm2-135m")
        ready = next(c for c in model["status"]["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "DigestMismatch"
    finally:
        assert server.stop() == 0


def test_a_crashing_replica_is_reported_with_its_log_at_the_timeout(tmp_path: Path) -> None:
    text = QUICKSTART.read_text().replace("n_ctx: 2048", "no_such_flag: 1")
    stack = write(tmp_path / "stack", {"crash.yaml": text})
    server = up_with(tmp_path, stack / "crash.yaml", "--wait-timeout", "8")
    try:
        server.wait_ready()
        out = wait_for_report(server)
        assert "✗ endpoint/chat failed: 0/1 replicas ready" in out
        assert "    not ready after 8 s" in out
        assert "    replica default.chat.smollm2-135m.0: " in out
        assert "unrecognized arguments: --no_such_flag 1" in out
        assert "✓ model/smollm2-135m" not in out
    finally:
        assert server.stop() == 0
