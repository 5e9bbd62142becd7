"""Extra stages slot in between routing and forwarding; the app mounts anywhere and swaps routes."""

import asyncio

import pytest
from gateway_harness import (
    Exchange,
    ScriptedTransport,
    accept_test_token,
    drive,
    endpoint,
    json_response,
    replica,
)

from corral.gateway import GatewayError, RouteSource, RouteTable, UpstreamResponse, create_gateway

A = "http://127.0.0.1:9001"
CHAT = "/v1/chat/completions"
GOOD = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


async def answer_ok(_url):
    return json_response({"ok": True})


def routes_with_chat():
    return RouteSource(
        RouteTable.from_endpoints([endpoint("chat", {"v1": 100}, [replica("v1", A)])])
    )


async def test_extra_stages_run_in_order_around_the_forward():
    trail: list[str] = []

    def recorder(name):
        async def stage(call, call_next):
            assert call.endpoint is not None
            assert call.endpoint.public_name == "chat"
            trail.append(f"{name} before")
            await call_next(call)
            trail.append(f"{name} after")

        return stage

    async def respond(_url):
        trail.append("upstream")
        return json_response({"ok": True})

    app = create_gateway(
        routes_with_chat(),
        authenticate=accept_test_token,
        transport=ScriptedTransport(respond),
        stages=[recorder("one"), recorder("two")],
    )
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    assert exchange.status == 200
    assert trail == ["one before", "two before", "upstream", "two after", "one after"]


async def test_a_stage_can_refuse_with_an_openai_error():
    async def deny(_call, _call_next):
        raise GatewayError(403, "policy forbids invoke on chat", type="permission_error")

    transport = ScriptedTransport(answer_ok)
    app = create_gateway(
        routes_with_chat(), authenticate=accept_test_token, transport=transport, stages=[deny]
    )
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    assert exchange.status == 403
    assert exchange.json() == {
        "error": {
            "message": "policy forbids invoke on chat",
            "type": "permission_error",
            "param": None,
            "code": None,
        }
    }
    assert transport.calls == []


async def test_app_answers_below_a_root_path():
    app = create_gateway(
        routes_with_chat(), authenticate=accept_test_token, transport=ScriptedTransport(answer_ok)
    )
    exchange = await drive(app, "GET", "/v1/models", root_path="/gw")
    assert exchange.status == 200
    assert [model["id"] for model in exchange.json()["data"]] == ["chat"]


async def test_a_request_in_flight_keeps_its_route_snapshot():
    exchange = Exchange()
    routes = routes_with_chat()
    release = asyncio.Event()

    async def held():
        yield b'{"ok":'
        await release.wait()
        yield b"true}"

    async def respond(_url):
        return UpstreamResponse(200, [(b"content-type", b"application/json")], held())

    app = create_gateway(
        routes, authenticate=accept_test_token, transport=ScriptedTransport(respond)
    )
    in_flight = asyncio.create_task(drive(app, "POST", CHAT, body=GOOD, exchange=exchange))
    async with asyncio.timeout(10):
        await exchange.first_chunk.wait()
        routes.update(RouteTable())
        after_swap = await drive(app, "POST", CHAT, body=GOOD)
        release.set()
        await in_flight
    assert after_swap.status == 404
    assert (exchange.status, exchange.body) == (200, b'{"ok":true}')


async def test_lifespan_completes_and_leaves_a_given_transport_open():
    transport = ScriptedTransport(answer_ok)
    app = create_gateway(routes_with_chat(), authenticate=accept_test_token, transport=transport)
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive():
        return inbox.pop(0)

    async def send(message):
        sent.append(message["type"])

    await app({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert not transport.closed


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        create_gateway(RouteSource(), authenticate=accept_test_token, max_attempts=0)
