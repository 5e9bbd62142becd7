"""The signing keys live in one encrypted Secret that every process of a deployment follows.

Two workload-identity extensions stand for two server processes: each has its own connection
to the same store (SQLite file or PostgreSQL database) and its own gateway access feed. The
first to start creates the key ring; the second adopts it; a rotation made through one
process's API reaches the other's JWKS and verifier through the store's watch.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from starlette.applications import Starlette

from corral.audit import AuditEvent
from corral.identity import Principal
from corral.server.access_feed import AccessFeed
from corral.server.config import ServerConfig
from corral.server.extensions import ServerContext
from corral.server.workload_identity import (
    SIGNING_KEYS_SECRET,
    SYSTEM_NAMESPACE,
    WorkloadIdentity,
)
from corral.store import Store, open_store
from corral.store.encryption import EncryptingStore
from postgres_scratch import empty_database, run_in_own_loop

pytestmark = pytest.mark.timeout(60)
CONVERGE_S = 20


class RecordedAudit:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)


@dataclass
class Process:
    identity: WorkloadIdentity
    access: AccessFeed
    inner: Store
    http: httpx.AsyncClient
    stop: asyncio.Event
    audit: RecordedAudit

    def authenticate(self, token: str) -> Principal | None:
        return self.access.authenticate(token)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
        url: str = request.getfixturevalue("postgres_database")
        run_in_own_loop(lambda: empty_database(url))  # one database per module: start afresh
        return url
    return f"sqlite:///{tmp_path / 'corral.db'}"


@pytest.fixture
async def processes(store_url: str, tmp_path: Path) -> AsyncIterator[tuple[Process, Process]]:
    secret_key = Fernet.generate_key()
    started: list[Process] = []
    try:
        for _ in range(2):
            inner = await open_store(store_url)
            store = EncryptingStore(inner, secret_key)
            stop = asyncio.Event()
            context = ServerContext(
                config=ServerConfig(state_dir=tmp_path),
                state_dir=tmp_path,
                store=store,
                store_url=store_url,
                stop=stop,
                audit=RecordedAudit(),
            )
            access = context.access = AccessFeed(store, lambda _token: False)
            identity = WorkloadIdentity(context)
            await identity.start()
            app = Starlette(routes=[*identity.api_routes(), *identity.public_routes()])
            http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p")
            audit = context.audit
            assert isinstance(audit, RecordedAudit)
            started.append(Process(identity, access, inner, http, stop, audit))
        yield started[0], started[1]
    finally:
        for process in started:
            process.stop.set()
            await process.identity.aclose()
            await process.http.aclose()
            await process.inner.close()


async def mint(process: Process, **request: object) -> str:
    answer = await process.http.post("/corral/v1/tokens", json=request)
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["token"]
    return token


async def published(process: Process) -> set[str]:
    answer = await process.http.get("/.well-known/jwks.json")
    assert answer.status_code == 200
    assert "max-age" in answer.headers["cache-control"]
    keys = answer.json()["keys"]
    assert all("d" not in key for key in keys)  # never private material
    return {key["kid"] for key in keys}


async def test_the_second_process_adopts_the_ring_the_first_created(
    processes: tuple[Process, Process],
) -> None:
    first, second = processes
    assert first.identity.issuer.issuer == second.identity.issuer.issuer
    assert first.identity.issuer.issuer.startswith("corral:")
    assert await published(first) == await published(second)
    token = await mint(first, subject="research/summariser", team="writers")
    principal = second.authenticate(token)
    assert principal is not None
    assert principal.id == "spiffe://corral.local/ns/research/agent/summariser"
    assert principal.team == "writers"
    [issued] = first.audit.events
    assert (issued.action, issued.resource) == ("token:issue", principal.id)
    assert issued.details["team"] == "writers"
    assert token not in json.dumps(dict(issued.details))  # what was issued, never the token


async def test_private_keys_are_encrypted_at_rest(processes: tuple[Process, Process]) -> None:
    first, _ = processes
    raw = await first.inner.get("Secret", SYSTEM_NAMESPACE, SIGNING_KEYS_SECRET)
    stored = json.dumps(raw)
    assert "PRIVATE KEY" not in stored
    assert "corral:" not in stored  # the issuer too: the whole data is one ciphertext


async def test_a_rotation_anywhere_reaches_every_process(
    processes: tuple[Process, Process],
) -> None:
    first, second = processes
    old_token = await mint(second, subject="default/helper")
    old_kid = second.identity.ring.current.kid
    rotated = await first.http.post("/corral/v1/signing-keys/rotate")
    assert rotated.status_code == 200, rotated.text
    new_kid = rotated.json()["kid"]
    assert new_kid != old_kid
    assert set(rotated.json()["published"]) == {old_kid, new_kid}

    deadline = time.monotonic() + CONVERGE_S
    while second.identity.ring.current.kid != new_kid:
        assert time.monotonic() < deadline, "the rotation never reached the second process"
        await asyncio.sleep(0.02)
    assert await published(second) == {old_kid, new_kid}
    new_token = await mint(second, subject="default/helper")
    assert json.loads(_part(new_token, 0))["kid"] == new_kid
    for process in (first, second):
        assert process.authenticate(old_token) is not None
        assert process.authenticate(new_token) is not None


async def test_bad_token_requests_are_400_saying_which_field(
    processes: tuple[Process, Process],
) -> None:
    first, _ = processes
    cases = [
        ({}, "subject: required"),
        ({"subject": "no-slash"}, "is not 'namespace/name'"),
        ({"subject": "Bad_NS/x"}, "not a valid workload id"),
        ({"subject": "spiffe://elsewhere/ns/a/agent/b"}, "trust domain corral.local"),
        ({"subject": "a/b", "ttlSeconds": 0}, "ttlSeconds"),
        ({"subject": "a/b", "ttlSeconds": True}, "ttlSeconds"),
        ({"subject": "a/b", "singleUse": "yes"}, "singleUse"),
        ({"subject": "a/b", "audience": ""}, "audience"),
        ({"subject": "a/b", "colour": "red"}, "unknown field(s) colour"),
    ]
    for request, message in cases:
        answer = await first.http.post("/corral/v1/tokens", json=request)
        assert answer.status_code == 400, (request, answer.text)
        assert message in answer.json()["message"], (request, answer.text)
    not_json = await first.http.post("/corral/v1/tokens", content=b"{nope")
    assert not_json.status_code == 400
    assert "not valid JSON" in not_json.json()["message"]


def _part(token: str, index: int) -> bytes:
    import base64

    piece = token.split(".")[index]
    return base64.urlsafe_b64decode(piece + "=" * (-len(piece) % 4))
