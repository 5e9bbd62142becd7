"""Two ``corral serve`` replicas on one PostgreSQL database: kill the leader, the other leads.

Needs PostgreSQL (CORRAL_TEST_POSTGRES_DSN); it fails, never skips, when it is unreachable.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from cryptography.fernet import Fernet

from corral.api.errors import NotFound
from corral.client import CorralClient, resolve_connection

from .helpers import ServerProcess, clean_env

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

POSTGRES_DSN = os.environ.get(
    "CORRAL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TAKEOVER_DEADLINE_S = 15.0
FIRST_LEADER_DEADLINE_S = 30.0


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_DSN, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh, empty database for this test; dropped afterwards."""
    name = f"corral_cli_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(POSTGRES_DSN)._replace(path=f"/{name}"))
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def lease_holder(client: CorralClient) -> str | None:
    try:
        lease = client.get("Lease", "corral-controllers", namespace="corral-system")
    except NotFound:
        return None
    return str(lease["spec"].get("holderIdentity") or "") or None


def wait_for_holder(client: CorralClient, wanted: set[str], deadline_s: float) -> str:
    deadline = time.monotonic() + deadline_s
    holder = None
    while time.monotonic() < deadline:
        holder = lease_holder(client)
        if holder in wanted:
            return holder
        time.sleep(0.2)
    raise AssertionError(f"the lease holder is {holder!r}, not one of {sorted(wanted)}")


def test_killing_the_leader_hands_the_lease_to_the_other_replica(
    database: str, tmp_path: Path
) -> None:
    # Replicas of one deployment share the key that seals Secrets in the shared store.
    shared_key = Fernet.generate_key().decode()
    replicas = {
        f"replica-{index}": ServerProcess(
            [
                "serve",
                "--role",
                "apiserver,controllers",
                "--store",
                database,
                "--port",
                "0",
                "--state-dir",
                str(tmp_path / f"state-{index}"),
                "--identity",
                f"replica-{index}",
            ],
            tmp_path / f"state-{index}",
            tmp_path / f"logs-{index}",
            env=clean_env(CORRAL_SECRET_KEY=shared_key),
        )
        for index in range(2)
    }
    clients: dict[str, CorralClient] = {}
    try:
        for replica in replicas.values():
            replica.start()
        for identity, replica in replicas.items():
            replica.wait_ready()
            connection = resolve_connection(state_dir=replica.state_dir)
            clients[identity] = CorralClient(connection.url, connection.token)

        leader = wait_for_holder(clients["replica-0"], set(replicas), FIRST_LEADER_DEADLINE_S)
        (survivor,) = set(replicas) - {leader}
        assert replicas[leader].stop(signal.SIGKILL) == -signal.SIGKILL

        assert wait_for_holder(clients[survivor], {survivor}, TAKEOVER_DEADLINE_S) == survivor
        assert "became leader" in replicas[survivor].stderr
    finally:
        for client in clients.values():
            client.close()
        for replica in replicas.values():
            if replica.process is not None:
                replica.stop()
