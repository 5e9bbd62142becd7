"""A replica silent past perTrySeconds is a failed try; past totalSeconds the client gets 504."""

import asyncio

import pytest
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
C = "http://127.0.0.1:9003"
D = "http://127.0.0.1:9004"
CHAT = "/v1/chat/completions"
GOOD = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def gateway_over(transport, addresses, timeouts, **options):
    replicas = [replica("v1", address) for address in addresses]
    routing = {"timeouts": timeouts}
    table = RouteTable.from_endpoints([endpoint("chat", {"v1": 100}, replicas, routing=routing)])
    return create_gateway(
        RouteSource(table), authenticate=accept_test_token, transport=transport, **options
    )


def hanging_on(*silent):
    never = asyncio.Event()

    async def respond(url):
        if url.startswith(silent):
            await never.wait()
        return json_response({"served_by": url})

    return ScriptedTransport(respond)


async def test_a_silent_replica_times_out_and_another_answers():
    transport = hanging_on(A)
    app = gateway_over(transport, [A, B], {"perTrySeconds": 0.05, "totalSeconds": 30})
    for _ in range(4):
        exchange = await drive(app, "POST", CHAT, body=GOOD)
        assert exchange.status == 200
        assert exchange.json() == {"served_by": f"{B}{CHAT}"}
    assert app.balancer.in_flight == {}


async def test_nothing_answering_in_time_is_an_openai_shaped_504():
    transport = hanging_on(A, B)
    app = gateway_over(transport, [A, B], {"perTrySeconds": 0.05, "totalSeconds": 30})
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    assert exchange.status == 504
    error = exchange.json()["error"]
    assert error["type"] == "server_error"
    assert error["code"] == "upstream_timeout"
    assert "no response within 0.05s" in error["message"]
    assert len(transport.calls) == 2
    assert app.balancer.in_flight == {}


async def test_the_total_timeout_stops_further_tries():
    transport = hanging_on(A, B, C, D)
    app = gateway_over(
        transport, [A, B, C, D], {"perTrySeconds": 0.2, "totalSeconds": 0.3}, max_attempts=4
    )
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    assert exchange.status == 504
    assert 1 <= len(transport.calls) <= 2  # a second try gets what is left of the 0.3 s


@pytest.mark.parametrize(
    ("timeouts", "problem"),
    [
        ({"perTrySeconds": 0}, "spec.routing.timeouts.perTrySeconds"),
        ({"totalSeconds": "soon"}, "spec.routing.timeouts.totalSeconds"),
        ({"perTrySeconds": 10, "totalSeconds": 5}, "perTrySeconds must not exceed totalSeconds"),
        ({"perTry": 10}, "spec.routing.timeouts.perTry"),
    ],
)
def test_bad_timeouts_are_refused_naming_the_field(timeouts, problem):
    bad = endpoint("chat", {"v1": 100}, [], routing={"timeouts": timeouts})
    with pytest.raises(ValueError, match="Endpoint default/chat") as raised:
        RouteTable.from_endpoints([bad])
    assert problem in str(raised.value)


def test_timeouts_default_to_two_minutes_a_try_and_five_in_all():
    route = RouteTable.from_endpoints([endpoint("chat", {"v1": 100}, [])]).lookup("chat")
    assert route is not None
    assert (route.policy.per_try_seconds, route.policy.total_seconds) == (120.0, 300.0)


async def test_a_cancelled_request_is_not_taken_for_a_timeout():
    sent, never = asyncio.Event(), asyncio.Event()

    async def hang(_url):
        sent.set()
        await never.wait()

    transport = ScriptedTransport(hang)
    app = gateway_over(transport, [A, B], {"perTrySeconds": 30, "totalSeconds": 60})
    request = asyncio.create_task(drive(app, "POST", CHAT, body=GOOD))
    await sent.wait()
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    assert len(transport.calls) == 1  # no retry: the caller is gone
    assert app.balancer.in_flight == {}
