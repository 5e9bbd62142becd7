"""Retries stay within a share of an Endpoint's requests over a sliding window, with a floor."""

import pytest
from gateway_harness import (
    FakeClock,
    ScriptedTransport,
    accept_test_token,
    drive,
    endpoint,
    replica,
)

from corral.gateway import Balancer, RouteSource, RouteTable, UpstreamUnreachable, create_gateway

A = "http://127.0.0.1:9001"
B = "http://127.0.0.1:9002"
C = "http://127.0.0.1:9003"
CHAT = "/v1/chat/completions"
GOOD = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def route_with(budget):
    obj = endpoint("chat", {"v1": 100}, [replica("v1", A)], routing={"retryBudget": budget})
    route = RouteTable.from_endpoints([obj]).lookup("chat")
    assert route is not None
    return route


def test_retries_stay_within_the_ratio_of_requests():
    route = route_with({"ratio": 0.2, "minRetriesPerSecond": 0})
    balancer = Balancer(clock=FakeClock())
    for _ in range(10):
        balancer.count_request(route)
    assert [balancer.take_retry(route) for _ in range(3)] == [True, True, False]
    for _ in range(5):
        balancer.count_request(route)
    assert [balancer.take_retry(route) for _ in range(2)] == [True, False]


def test_the_window_slides_so_old_requests_stop_paying_for_retries():
    route = route_with({"ratio": 0.5, "minRetriesPerSecond": 0, "windowSeconds": 10})
    clock = FakeClock()
    balancer = Balancer(clock=clock)
    for _ in range(4):
        balancer.count_request(route)
    assert balancer.take_retry(route)
    clock.now += 11  # the requests and the retry have left the window
    assert not balancer.take_retry(route)
    balancer.count_request(route)
    balancer.count_request(route)
    assert balancer.take_retry(route)


def test_a_few_retries_per_second_are_allowed_however_few_requests_came():
    route = route_with({"ratio": 0, "minRetriesPerSecond": 1, "windowSeconds": 5})
    balancer = Balancer(clock=FakeClock())
    assert [balancer.take_retry(route) for _ in range(6)] == [True] * 5 + [False]


def test_budgets_are_per_endpoint():
    budget = {"ratio": 0.5, "minRetriesPerSecond": 0}
    objects = [
        endpoint(name, {"v1": 100}, [replica("v1", A)], routing={"retryBudget": budget})
        for name in ("chat", "code")
    ]
    table = RouteTable.from_endpoints(objects)
    chat, code = table.lookup("chat"), table.lookup("code")
    balancer = Balancer(clock=FakeClock())
    balancer.count_request(chat)
    balancer.count_request(chat)
    assert not balancer.take_retry(code)
    assert balancer.take_retry(chat)


async def test_a_failing_upstream_gets_few_more_calls_than_requests():
    async def refuse(_url):
        raise UpstreamUnreachable("refused")

    transport = ScriptedTransport(refuse)
    replicas = [replica("v1", address) for address in (A, B, C)]
    routing = {
        "retryBudget": {"ratio": 0.2, "minRetriesPerSecond": 0},
        "outlierDetection": {"consecutiveFailures": 1000},
    }
    table = RouteTable.from_endpoints([endpoint("chat", {"v1": 100}, replicas, routing=routing)])
    app = create_gateway(RouteSource(table), authenticate=accept_test_token, transport=transport)
    statuses = [(await drive(app, "POST", CHAT, body=GOOD)).status for _ in range(20)]
    assert statuses == [502] * 20
    assert len(transport.calls) == 24  # 20 requests and 20% of them retried, not 60 calls
    last = await drive(app, "POST", CHAT, body=GOOD)
    assert "retry budget spent" in last.json()["error"]["message"]


@pytest.mark.parametrize(
    ("budget", "field"),
    [
        ({"ratio": 2}, "ratio"),
        ({"windowSeconds": 0}, "windowSeconds"),
        ({"minRetriesPerSecond": -1}, "minRetriesPerSecond"),
    ],
)
def test_bad_budgets_are_refused_naming_the_field(budget, field):
    bad = endpoint("chat", {"v1": 100}, [], routing={"retryBudget": budget})
    with pytest.raises(ValueError, match=f"spec.routing.retryBudget.{field}"):
        RouteTable.from_endpoints([bad])
