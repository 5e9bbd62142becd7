"""Streamed answers reach the client chunk by chunk as the upstream produces them."""

import asyncio

import httpx
import orjson
from gateway_harness import (
    TOKEN,
    Exchange,
    FakeOpenAIServer,
    ScriptedTransport,
    accept_test_token,
    drive,
    endpoint,
    replica,
    serve_asgi,
)

from corral.gateway import RouteSource, RouteTable, UpstreamResponse, create_gateway

A = "http://127.0.0.1:9001"
CHAT = "/v1/chat/completions"
STREAM = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
SSE = [(b"content-type", b"text/event-stream")]


def gateway_over(transport, address=A):
    routes = RouteSource(
        RouteTable.from_endpoints([endpoint("chat", {"v1": 100}, [replica("v1", address)])])
    )
    return create_gateway(routes, authenticate=accept_test_token, transport=transport)


async def test_client_gets_the_first_chunk_before_the_upstream_finishes():
    exchange = Exchange()
    finished = asyncio.Event()

    async def paced():
        yield b"data: one\n\n"
        # Without pass-through the client never sees "one" and this wait never ends.
        await exchange.first_chunk.wait()
        yield b"data: two\n\n"
        finished.set()

    async def respond(_url):
        return UpstreamResponse(200, SSE, paced())

    app = gateway_over(ScriptedTransport(respond))
    async with asyncio.timeout(10):
        await drive(app, "POST", CHAT, body=STREAM, exchange=exchange)
    assert finished.is_set()
    assert exchange.chunks == [b"data: one\n\n", b"data: two\n\n"]
    assert exchange.headers["content-type"] == "text/event-stream"
    assert exchange.completed


async def test_replica_counts_as_in_flight_while_streaming():
    exchange = Exchange()
    seen: list[dict[str, int]] = []

    async def paced(app):
        yield b"data: one\n\n"
        await exchange.first_chunk.wait()
        seen.append(dict(app.balancer.in_flight))
        yield b"data: two\n\n"

    async def respond(_url):
        return UpstreamResponse(200, SSE, paced(app))

    app = gateway_over(ScriptedTransport(respond))
    async with asyncio.timeout(10):
        await drive(app, "POST", CHAT, body=STREAM, exchange=exchange)
    assert seen == [{f"{A}/v1": 1}]
    assert app.balancer.in_flight == {}


async def test_client_disconnect_stops_pulling_the_upstream():
    exchange = Exchange()
    produced: list[bytes] = []
    closed = asyncio.Event()

    async def endless():
        try:
            for index in range(1000):
                chunk = f"data: {index}\n\n".encode()
                produced.append(chunk)
                yield chunk
                if index == 0:
                    await exchange.first_chunk.wait()
                    exchange.disconnect.set()
                await asyncio.sleep(0)
        finally:
            closed.set()

    async def respond(_url):
        return UpstreamResponse(200, SSE, endless())

    app = gateway_over(ScriptedTransport(respond))
    async with asyncio.timeout(10):
        await drive(app, "POST", CHAT, body=STREAM, exchange=exchange)
    assert closed.is_set()
    assert len(produced) < 10
    assert not exchange.completed


async def test_sse_events_stream_through_real_http_one_by_one():
    upstream = FakeOpenAIServer()
    upstream.hold = asyncio.Event()
    async with serve_asgi(upstream) as upstream_url:
        app = gateway_over(None, upstream_url)
        async with serve_asgi(app) as gateway_url, httpx.AsyncClient() as client:
            request = client.stream(
                "POST",
                f"{gateway_url}{CHAT}",
                json=STREAM,
                headers={"authorization": f"Bearer {TOKEN}"},
                timeout=10,
            )
            async with request as response:
                assert response.status_code == 200
                assert response.headers["content-type"] == "text/event-stream"
                events = response.aiter_lines()
                first = await anext(events)
                assert orjson.loads(first.removeprefix("data: "))["choices"][0]["delta"] == {
                    "content": "Hello"
                }
                assert not upstream.hold.is_set()  # the upstream is still mid-answer
                upstream.hold.set()
                rest = [line async for line in events if line]
    assert rest[-1] == "data: [DONE]"
    assert len(rest) == 3
