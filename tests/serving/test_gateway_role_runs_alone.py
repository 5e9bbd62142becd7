"""``corral serve --role gateway --store postgresql://...``: a gateway process on its own.

It routes from the shared store's watch (no API server, no controllers in the process), answers
``/healthz`` and ``/readyz`` itself, and takes the admin token. Needs PostgreSQL
(CORRAL_TEST_POSTGRES_DSN); it fails, never skips, when that is unreachable.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import openai
import pytest

from corral.api.validation import validate_object
from corral.server import GATEWAY, ServerConfig, ServerInfo, serve
from corral.store import Store, open_store

from .fake_upstream import fake_upstream
from .helpers import HELLO, endpoint

pytestmark = pytest.mark.postgres

POSTGRES_DSN = os.environ.get(
    "CORRAL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
KEY = "local-server-key"
WAIT_S = 20.0


async def _admin(statement: str) -> None:
    try:
        connection = await asyncpg.connect(POSTGRES_DSN, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        pytest.fail(f"PostgreSQL is unreachable at {POSTGRES_DSN}: {error!r}", pytrace=False)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
async def database() -> AsyncIterator[str]:
    name = f"corral_gw_{secrets.token_hex(6)}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(POSTGRES_DSN)._replace(path=f"/{name}"))
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def store(database: str) -> AsyncIterator[Store]:
    opened = await open_store(database)
    try:
        yield opened
    finally:
        await opened.close()


def status_at(address: str, *, ready: bool) -> dict[str, Any]:
    replica = {
        "name": "default.chat.v1.0",
        "model": "v1",
        "state": "Ready" if ready else "CrashLoopBackOff",
        "ready": ready,
        "address": address,
        "apiBase": f"{address}/v1",
    }
    return {"replicas": [replica]}


async def test_a_gateway_only_process_routes_from_the_shared_store(
    database: str, store: Store, tmp_path: Path
) -> None:
    with fake_upstream(KEY) as upstream:
        server_root = upstream.base_url.removesuffix("/v1")
        chat = endpoint("chat", {"v1": 100}, runtime={"options": {"api_key": KEY}})
        (outcome,) = await store.apply([validate_object(chat)])
        await store.update_status({**outcome.object, "status": status_at(server_root, ready=True)})

        ready: asyncio.Queue[ServerInfo] = asyncio.Queue()

        async def on_ready(info: ServerInfo) -> None:
            await ready.put(info)

        stop = asyncio.Event()
        config = ServerConfig(
            port=0, state_dir=tmp_path / "state", store_url=database, roles=frozenset({GATEWAY})
        )
        serving = asyncio.create_task(serve(config, on_ready=on_ready, stop=stop))
        try:
            info = await asyncio.wait_for(ready.get(), WAIT_S)
            await _check(info, store, server_root)
        finally:
            stop.set()
            await serving
        # The server runtime's own api_key option goes upstream with every call; the version's
        # name replaces the Endpoint's in the body.
        assert {seen.body["model"] for seen in upstream.chats()} == {"v1"}
        assert {seen.headers["authorization"] for seen in upstream.chats()} == {f"Bearer {KEY}"}


async def _check(info: ServerInfo, store: Store, server_root: str) -> None:
    assert info.url is None  # no API server in this process
    assert info.listen_url is not None
    assert info.openai_base_url == f"{info.listen_url}/v1"
    assert info.roles == frozenset({GATEWAY})
    assert not (info.state_dir / "server.json").exists()
    token = (info.state_dir / "admin.token").read_text().strip()

    async with httpx.AsyncClient(base_url=info.listen_url, timeout=10) as http:
        assert (await http.get("/healthz")).text == "ok"
        assert (await http.get("/readyz")).status_code == 200
        elsewhere = await http.get("/apis/corral.dev/v1alpha1/namespaces")
        assert elsewhere.status_code == 404
        assert elsewhere.json()["reason"] == "NotFound"

    client = openai.AsyncOpenAI(
        base_url=info.openai_base_url, api_key=token, max_retries=0, timeout=10
    )
    async with client:
        answer = await client.chat.completions.create(model="chat", messages=HELLO)
        assert answer.choices[0].message.content == "upstream says: Say hello."

        chat = await store.get("Endpoint", "default", "chat")
        await store.update_status({**chat, "status": status_at(server_root, ready=False)})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        refused: openai.APIStatusError | None = None
        while refused is None:
            try:
                await client.chat.completions.create(model="chat", messages=HELLO)
            except openai.APIStatusError as error:
                refused = error
            assert loop.time() < deadline, "the gateway never saw the replica go down"
            await asyncio.sleep(0.05)
        assert refused.status_code == 503
        assert "default.chat.v1.0 CrashLoopBackOff" in refused.message
