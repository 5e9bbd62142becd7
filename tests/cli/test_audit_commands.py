"""``corral audit`` against a real ``corral up``: tail shows what the CLI just wrote, verify
passes with the server's key or a pinned one, fails with a key the log was not signed with, and
bad input (a missing file, a file that is not a key, --db without a key, no server) gets a
message, never a traceback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.audit import SigningKey

from .helpers import Cli, ServerProcess, clean_env, write

CHECKPOINT_WAIT_S = 30

TEAM = """apiVersion: corral.dev/v1alpha1
kind: Team
metadata: {name: auditors}
spec: {}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``corral up`` signing checkpoints every 0.2 s (the conftest one waits the default 60)."""
    root = tmp_path_factory.mktemp("corral-audit-cli")
    state_dir = root / "state"
    env = clean_env(CORRAL_AUDIT_CHECKPOINT_INTERVAL="0.2")
    process = ServerProcess(
        ["up", "--port", "0", "--state-dir", str(state_dir)], state_dir, root / "logs", env=env
    ).start()
    try:
        process.wait_ready()
        yield process
    finally:
        assert process.stop() == 0, process.stderr


def test_tail_shows_the_write_and_verify_passes(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path, {"team.yaml": TEAM})
    cli.ok("apply", "-f", str(tmp_path / "team.yaml"))
    tail = cli.json("audit", "tail", "-n", "5")
    (written,) = [r for r in tail["items"] if r["resource"] == "Team/default/auditors"]
    assert (written["actor"], written["action"], written["decision"]) == (
        "admin",
        "apply:created",
        "written",
    )
    table = cli.ok("audit", "tail", "-n", "5")
    assert table.splitlines()[0].split()[:3] == ["SEQ", "TIME", "ACTOR"]
    assert "Team/default/auditors" in table

    verified = cli.ok("audit", "verify")
    assert "ok: the audit log is intact" in verified
    records = int(verified.split("records checked: ")[1].split()[0])
    assert records >= len(tail["items"])


def test_verify_with_a_pinned_key_and_offline(
    cli: Cli, server: ServerProcess, tmp_path: Path
) -> None:
    pinned = tmp_path / "audit.pub"
    pinned.write_text(cli.ok("audit", "keys"))
    assert "ok:" in cli.ok("audit", "verify", "--public-key", str(pinned))
    database = server.state_dir / "audit.db"
    offline = cli.ok("audit", "verify", "--db", str(database), "--public-key", str(pinned))
    assert "ok: the audit log is intact" in offline

    deadline = time.monotonic() + CHECKPOINT_WAIT_S
    while "checkpoints verified: 0 " in cli.ok("audit", "verify"):
        assert time.monotonic() < deadline, "no checkpoint was signed"
        time.sleep(0.1)
    stranger = tmp_path / "stranger.pub"
    stranger.write_bytes(SigningKey.generate().public_pem())
    wrong = cli("audit", "verify", "--public-key", str(stranger))
    assert wrong.returncode == 1
    assert "signature: checkpoint at size" in wrong.stderr
    assert "signed with unknown key" in wrong.stderr


def test_bad_input_gets_a_message(cli: Cli, tmp_path: Path) -> None:
    not_a_key = write(tmp_path, {"key.pem": "hello"}) / "key.pem"
    refused = cli("audit", "verify", "--public-key", str(not_a_key))
    assert refused.returncode == 1
    assert f"{not_a_key}: audit public key: not a PEM public key" in refused.stderr

    no_key = cli("audit", "verify", "--db", str(tmp_path / "audit.db"))
    assert no_key.returncode == 2
    assert "--db needs --public-key" in no_key.stderr

    key = tmp_path / "ok.pub"
    key.write_bytes(SigningKey.generate().public_pem())
    missing = cli("audit", "verify", "--db", str(tmp_path / "nothing.db"), "--public-key", str(key))
    assert missing.returncode == 1
    assert "nothing.db: no such file" in missing.stderr

    limit = cli("audit", "tail", "-n", "0")
    assert limit.returncode == 2


def test_no_server_is_a_message(tmp_path: Path) -> None:
    offline = Cli(clean_env(CORRAL_STATE_DIR=str(tmp_path / "state")), tmp_path)
    for args in (("verify",), ("tail",), ("keys",)):
        result = offline("audit", *args)
        assert result.returncode == 1
        assert result.stderr.startswith("error: ")
