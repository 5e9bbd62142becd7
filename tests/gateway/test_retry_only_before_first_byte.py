"""A replica failing before it answers is skipped for another; a started answer is not retried."""

import pytest
from gateway_harness import (
    FakeOpenAIServer,
    ScriptedTransport,
    accept_test_token,
    closed_port,
    drive,
    endpoint,
    iterate,
    json_response,
    replica,
    serve_asgi,
)

from corral.gateway import (
    HttpTransport,
    RouteSource,
    RouteTable,
    UpstreamError,
    UpstreamResponse,
    UpstreamUnreachable,
    create_gateway,
)

A = "http://127.0.0.1:9001"
B = "http://127.0.0.1:9002"
C = "http://127.0.0.1:9003"
CHAT = "/v1/chat/completions"
GOOD = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def gateway_over(transport, addresses, **options):
    replicas = [replica("v1", address) for address in addresses]
    routes = RouteSource(RouteTable.from_endpoints([endpoint("chat", {"v1": 100}, replicas)]))
    return create_gateway(routes, authenticate=accept_test_token, transport=transport, **options)


async def test_dead_replica_is_skipped_for_another():
    async def respond(url):
        if url.startswith(A):
            raise UpstreamUnreachable("connection refused")
        return json_response({"served_by": url})

    transport = ScriptedTransport(respond)
    app = gateway_over(transport, [A, B])
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    assert exchange.status == 200
    assert exchange.json() == {"served_by": f"{B}{CHAT}"}
    assert [call[1] for call in transport.calls] == [f"{A}{CHAT}", f"{B}{CHAT}"]
    assert app.balancer.in_flight == {}


async def test_tries_stop_at_max_attempts():
    async def refuse(_url):
        raise UpstreamUnreachable("refused")

    transport = ScriptedTransport(refuse)
    app = gateway_over(transport, [A, B, C], max_attempts=2)
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    assert exchange.status == 502
    assert len(transport.calls) == 2
    assert len({call[1] for call in transport.calls}) == 2


async def test_no_retry_once_the_response_started():
    async def broken_stream():
        yield b"data: first\n\n"
        raise UpstreamError("connection reset mid-body")

    async def respond(_url):
        return UpstreamResponse(200, [(b"content-type", b"text/event-stream")], broken_stream())

    transport = ScriptedTransport(respond)
    app = gateway_over(transport, [A, B])
    exchange = await drive(app, "POST", CHAT, body={**GOOD, "stream": True})
    assert exchange.status == 200
    assert exchange.chunks == [b"data: first\n\n"]
    assert not exchange.completed  # cut off, so the client can tell
    assert len(transport.calls) == 1
    assert app.balancer.in_flight == {}


async def test_upstream_error_status_is_relayed_not_retried():
    async def respond(_url):
        return UpstreamResponse(
            500, [(b"content-type", b"text/plain")], iterate(b"model crashed"), None
        )

    transport = ScriptedTransport(respond)
    app = gateway_over(transport, [A, B])
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    assert (exchange.status, exchange.body) == (500, b"model crashed")
    assert len(transport.calls) == 1


async def test_refused_port_falls_over_to_a_live_server_over_real_http():
    dead = f"http://127.0.0.1:{closed_port()}"
    upstream = FakeOpenAIServer()
    transport = HttpTransport()
    async with serve_asgi(upstream) as live:
        app = gateway_over(transport, [dead, live])
        exchange = await drive(app, "POST", CHAT, body=GOOD)
        await transport.aclose()
    assert exchange.status == 200
    assert exchange.json()["choices"][0]["message"]["content"] == "echo: hi"
    assert len(upstream.requests) == 1


async def test_unexpected_transport_failure_still_releases_the_replica():
    async def broken(_url):
        raise RuntimeError("bug in a transport")

    app = gateway_over(ScriptedTransport(broken), [A])
    with pytest.raises(RuntimeError, match="bug in a transport"):
        await drive(app, "POST", CHAT, body=GOOD)
    assert app.balancer.in_flight == {}
