"""A controllers-only process listens too: ``/healthz``, ``/readyz`` and the Endpoint logs route."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from corral.api.validation import validate_object
from corral.server import CONTROLLERS, ServerConfig, ServerInfo, serve
from corral.store import open_store

from .helpers import API, endpoint

WAIT_S = 20.0


async def test_health_and_logs_without_api_server_or_gateway(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    store = await open_store(f"sqlite:///{state_dir / 'corral.db'}")
    try:
        await store.apply([validate_object(endpoint("idle", {"m": 100}, replicas=0))])
    finally:
        await store.close()

    ready: asyncio.Queue[ServerInfo] = asyncio.Queue()

    async def on_ready(info: ServerInfo) -> None:
        await ready.put(info)

    stop = asyncio.Event()
    config = ServerConfig(port=0, state_dir=state_dir, roles=frozenset({CONTROLLERS}))
    serving = asyncio.create_task(serve(config, on_ready=on_ready, stop=stop))
    try:
        info = await asyncio.wait_for(ready.get(), WAIT_S)
        assert info.url is None
        assert info.openai_base_url is None
        assert info.listen_url is not None
        token = (state_dir / "admin.token").read_text().strip()
        headers = {"authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=info.listen_url, timeout=10) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 200
            logs = f"{API}/namespaces/default/endpoints/idle/logs"
            answer = await http.get(logs, headers=headers)
            assert answer.status_code == 200
            assert answer.json() == {"replicas": []}  # scaled to zero: no replica, no log
            missing = await http.get(
                f"{API}/namespaces/default/endpoints/gone/logs", headers=headers
            )
            assert missing.status_code == 404
            assert (await http.get(logs)).status_code == 401
            # No gateway and no API server here: their paths are not found.
            assert (await http.get("/v1/models", headers=headers)).status_code == 404
            assert (await http.get(f"{API}/namespaces", headers=headers)).status_code == 404
    finally:
        stop.set()
        await serving
