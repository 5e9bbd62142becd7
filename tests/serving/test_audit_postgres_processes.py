"""Two ``corral serve`` processes on one PostgreSQL database append to one audit log at once.

Each process has its own state dir (its own admin token) and both share the secret key, as
processes sharing a database must. Requests go to both gateways concurrently, and both API
servers take writes; the log must stay one dense chain, every checkpoint signed with the one
platform key from the store, and ``corral audit verify`` must pass against either process.

Needs PostgreSQL (CORRAL_TEST_POSTGRES_DSN); it fails, never skips, when it is unreachable.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from .fake_upstream import fake_upstream
from .helpers import CORRAL, HELLO, Corral, endpoint, is_ready

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

UPSTREAM_KEY = "sk-two-processes-77aa"
SHARED_SECRET_KEY = Fernet.generate_key().decode()
"""What every process on the module's database shares (Secrets are sealed with it)."""
REQUESTS_EACH = 24


@dataclass
class Replica(Corral):
    """``corral serve`` with every role on the shared database (the base class runs ``up``)."""

    store: str = ""
    roles: str = "apiserver,controllers,gateway"

    def start(self) -> Replica:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._logs = [(self.log_dir / name).open("wb") for name in ("stdout.log", "stderr.log")]
        argv = [
            CORRAL, "serve", "--role", self.roles, "--store", self.store,
            "--port", "0", "--state-dir", str(self.state_dir),
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, stdout=self._logs[0], stderr=self._logs[1])
        return self


@pytest.fixture
def replicas(postgres_database: str, tmp_path: Path) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CORRAL_SECRET_KEY", SHARED_SECRET_KEY)
        env.setenv("CORRAL_AUDIT_CHECKPOINT_EVERY", "10")
        env.delenv("CORRAL_STORE", raising=False)
        for index in range(2):
            replica = Replica(
                tmp_path / f"state-{index}", tmp_path / f"logs-{index}", store=postgres_database
            )
            started.append(replica.start())
    try:
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        codes = [replica.stop() for replica in started]
        assert codes == [0, 0], [replica.stderr for replica in started]


def audit_cli(replica: Corral, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [CORRAL, "audit", *args, "--server", replica.url, "--token", replica.token]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def records(replica: Corral) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    start: int | None = 0
    while start is not None:
        page = replica.api().get("/corral/v1/audit/records", params={"from": start}).json()
        items.extend(page["items"])
        start = page["next"]
    return items


@pytest.mark.timeout(300)
def test_two_processes_append_to_one_verifiable_chain(replicas: list[Replica]) -> None:
    first, second = replicas
    with fake_upstream(UPSTREAM_KEY) as upstream:
        runtime = {"type": "openai", "baseURL": upstream.base_url, "secretRef": "up-key"}
        secret = {
            "apiVersion": "corral.dev/v1alpha1",
            "kind": "Secret",
            "metadata": {"name": "up-key"},
            "spec": {"type": "api-key", "data": {"apiKey": UPSTREAM_KEY}},
        }
        first.apply(secret, endpoint("shared-chat", {"up-model": 100}, runtime=runtime))
        for replica in replicas:
            replica.wait_for("endpoints", "shared-chat", is_ready)

        def chat(replica: Corral) -> int:
            with replica.openai() as client:
                for _ in range(REQUESTS_EACH):
                    client.chat.completions.create(model="shared-chat", messages=HELLO)
            return REQUESTS_EACH

        def write(replica: Corral, index: int) -> None:
            team = {
                "apiVersion": "corral.dev/v1alpha1",
                "kind": "Team",
                "metadata": {"name": f"team-{index}"},
                "spec": {},
            }
            replica.apply(team)

        with ThreadPoolExecutor(max_workers=6) as pool:
            chats = [pool.submit(chat, replica) for replica in replicas for _ in range(2)]
            writes = [pool.submit(write, replicas[i % 2], i) for i in range(10)]
            assert sum(future.result() for future in chats) == 4 * REQUESTS_EACH
            for future in writes:
                future.result()

    log = records(first)
    assert log == records(second)  # one log, whichever process serves it
    assert [record["seq"] for record in log] == list(range(len(log)))
    invokes = [record for record in log if record["action"] == "invoke"]
    assert len(invokes) == 4 * REQUESTS_EACH
    assert {record["decision"] for record in invokes} == {"allow"}
    teams = {record["resource"] for record in log if record["resource"].startswith("Team/")}
    assert teams == {f"Team/default/team-{i}" for i in range(10)}
    key_written = [r for r in log if r["resource"] == "Secret/corral-system/audit-signing-key"]
    # Created once, by whichever process started first (the other's create may be refused).
    assert [r["decision"] for r in key_written if r["decision"] == "written"] == ["written"]
    assert {r["actor"] for r in key_written} == {"system:audit"}
    assert not [r for r in log if r["resource"].startswith("Lease/")]
    assert UPSTREAM_KEY not in json.dumps(log)
    assert "PRIVATE KEY" not in json.dumps(log)

    keys = [audit_cli(replica, "keys") for replica in replicas]
    assert keys[0].returncode == 0, keys[0].stderr
    assert keys[0].stdout == keys[1].stdout  # one platform key for every process

    for replica in replicas:
        checked = audit_cli(replica, "verify")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        checked_count = int(checked.stdout.split("records checked: ")[1].split()[0])
        assert checked_count >= len(log)  # controllers may have written status since
    checkpoints = first.api().get("/corral/v1/audit/checkpoints").json()["items"]
    assert len(checkpoints) >= 2
    assert len({checkpoint["kid"] for checkpoint in checkpoints}) == 1

    assert second.stop() == 0  # its last checkpoint is signed on the way out
    after = audit_cli(first, "verify")
    assert after.returncode == 0, after.stdout + after.stderr
    final = first.api().get("/corral/v1/audit/checkpoints").json()["items"]
    assert final[-1]["size"] >= len(log)  # everything both wrote is under a signed root
