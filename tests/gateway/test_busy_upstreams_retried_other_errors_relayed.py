"""429 and 503 before the body move on to another replica; other statuses reach the client as is."""

from gateway_harness import (
    ScriptedTransport,
    accept_test_token,
    drive,
    endpoint,
    json_response,
    replica,
)

from corral.gateway import RouteSource, RouteTable, create_gateway

A = "http://127.0.0.1:9001"
B = "http://127.0.0.1:9002"
CHAT = "/v1/chat/completions"
GOOD = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def gateway_over(statuses):
    async def respond(url):
        status = next(status for address, status in statuses.items() if url.startswith(address))
        return json_response({"status": status, "url": url}, status=status)

    transport = ScriptedTransport(respond)
    replicas = [replica("v1", address) for address in statuses]
    table = RouteTable.from_endpoints([endpoint("chat", {"v1": 100}, replicas)])
    app = create_gateway(RouteSource(table), authenticate=accept_test_token, transport=transport)
    return app, transport


async def test_a_busy_replica_is_retried_on_another():
    for busy in (429, 503):
        app, _ = gateway_over({A: busy, B: 200})
        for _ in range(3):
            exchange = await drive(app, "POST", CHAT, body=GOOD)
            assert exchange.status == 200
            assert exchange.json()["url"] == f"{B}{CHAT}"
        assert app.balancer.in_flight == {}


async def test_when_every_replica_is_busy_the_last_answer_is_relayed():
    app, transport = gateway_over({A: 429, B: 429})
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    assert exchange.status == 429
    assert exchange.json()["status"] == 429
    assert len(transport.calls) == 2


async def test_other_upstream_errors_are_relayed_without_a_retry():
    for status in (500, 400, 404):
        app, transport = gateway_over({A: status, B: status})
        exchange = await drive(app, "POST", CHAT, body=GOOD)
        assert exchange.status == status
        assert exchange.json() == {"status": status, "url": transport.calls[0][1]}
        assert len(transport.calls) == 1
