"""Over real HTTP: a silent upstream times out, a dead one is ejected, a down Endpoint falls back"""

import asyncio
import contextlib

import httpx
import pytest
from gateway_harness import (
    TOKEN,
    FakeOpenAIServer,
    accept_test_token,
    closed_port,
    endpoint,
    replica,
    serve_asgi,
)

from corral.gateway import RouteSource, RouteTable, create_gateway

MESSAGES = [{"role": "user", "content": "ping"}]


class SilentServer:
    """Reads the request and answers only once ``release`` is set (when the test ends)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.requests = 0

    async def __call__(self, _scope, receive, send):
        self.requests += 1
        while (await receive()).get("more_body"):
            pass
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


@contextlib.asynccontextmanager
async def gateway_over(objects):
    app = create_gateway(
        RouteSource(RouteTable.from_endpoints(objects)), authenticate=accept_test_token
    )
    async with serve_asgi(app) as url:
        headers = {"authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            yield app, client


@pytest.fixture
async def servers():
    fast, silent = FakeOpenAIServer(), SilentServer()
    async with serve_asgi(fast) as fast_url, serve_asgi(silent) as silent_url:
        try:
            yield fast, fast_url, silent, silent_url
        finally:
            silent.release.set()  # lets uvicorn finish the held requests and shut down


async def chat(client, model="chat"):
    return await client.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES})


async def test_a_silent_upstream_times_out_and_the_other_answers(servers):
    fast, fast_url, silent, silent_url = servers
    routing = {"timeouts": {"perTrySeconds": 0.2, "totalSeconds": 10}, "strategy": "round-robin"}
    replicas = [replica("v1", silent_url), replica("v1", fast_url)]
    async with gateway_over([endpoint("chat", {"v1": 100}, replicas, routing=routing)]) as (
        app,
        client,
    ):
        for _ in range(3):
            answer = await chat(client)
            assert answer.status_code == 200
            assert answer.json()["choices"][0]["message"]["content"] == "echo: ping"
        assert silent.requests >= 1
        assert len(fast.requests) == 3
        assert app.balancer.in_flight == {}


async def test_nothing_answering_in_time_is_a_504(servers):
    _, _, silent, silent_url = servers
    routing = {"timeouts": {"perTrySeconds": 0.2, "totalSeconds": 0.5}}
    objects = [endpoint("chat", {"v1": 100}, [replica("v1", silent_url)], routing=routing)]
    async with gateway_over(objects) as (_, client):
        answer = await chat(client)
        assert answer.status_code == 504
        assert answer.json()["error"]["code"] == "upstream_timeout"
        assert silent.requests == 1


async def test_a_dead_replica_is_ejected_and_traffic_goes_to_the_live_one(servers):
    fast, fast_url, _, _ = servers
    dead_url = f"http://127.0.0.1:{closed_port()}"
    routing = {"outlierDetection": {"consecutiveFailures": 2}, "strategy": "round-robin"}
    replicas = [replica("v1", dead_url), replica("v1", fast_url)]
    async with gateway_over([endpoint("chat", {"v1": 100}, replicas, routing=routing)]) as (
        app,
        client,
    ):
        for _ in range(8):
            assert (await chat(client)).status_code == 200
        assert list(app.balancer.ejections.ejected) == [f"{dead_url}/v1"]
        assert len(fast.requests) == 8


async def test_an_endpoint_without_a_live_replica_falls_back(servers):
    fast, fast_url, _, _ = servers
    dead_url = f"http://127.0.0.1:{closed_port()}"
    objects = [
        endpoint(
            "chat", {"small": 100}, [replica("small", dead_url)], routing={"fallback": ["big"]}
        ),
        endpoint("cold", {"small": 100}, [], routing={"fallback": ["big"]}),
        endpoint("big", {"large": 100}, [replica("large", fast_url)]),
    ]
    async with gateway_over(objects) as (_, client):
        for model in ("chat", "cold"):
            answer = await chat(client, model)
            assert answer.status_code == 200
            assert answer.headers["x-corral-fallback"] == "big"
            assert answer.json()["model"] == "large"
        assert len(fast.requests) == 2
