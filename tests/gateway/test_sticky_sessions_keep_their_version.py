"""A session key (x-session-id, else the OpenAI ``user``) pins a version; new weights move few."""

import random
from collections import Counter

from gateway_harness import ScriptedTransport, accept_test_token, drive, endpoint, json_response
from gateway_harness import replica as replica_entry

from corral.gateway import Balancer, RouteSource, RouteTable, create_gateway
from corral.gateway.balancer import session_key

A = "http://127.0.0.1:9001/v1"
B = "http://127.0.0.1:9002/v1"
C = "http://127.0.0.1:9003/v1"
CHAT = "/v1/chat/completions"
USERS = [f"user-{index}" for index in range(2000)]


def replica(model, base, **options):
    return replica_entry(model, base.removesuffix("/v1"), api_base=base, **options)


def route_with(weights, ready=("v1", "v2", "v3")):
    bases = {"v1": A, "v2": B, "v3": C}
    replicas = [replica(model, bases[model], ready=model in ready) for model in weights]
    route = RouteTable.from_endpoints([endpoint("chat", weights, replicas)]).lookup("chat")
    assert route is not None
    return route


def versions_of(route, balancer=None):
    balancer = balancer or Balancer()
    chosen = {}
    for user in USERS:
        picked = balancer.pick(route, session=session_key({"user": user}, None))
        assert picked is not None
        chosen[user] = picked[0].model
    return chosen


def test_a_session_always_gets_the_same_version_and_sessions_split_by_weight():
    route = route_with({"v1": 70, "v2": 30})
    first = versions_of(route, Balancer(random.Random(1).random))
    again = versions_of(route, Balancer(random.Random(2).random))
    assert first == again  # a hash, not the deck: the same in every gateway process
    counts = Counter(first.values())
    assert 1250 < counts["v1"] < 1550  # 70% of 2000 sessions, give or take the hash


def test_a_weight_change_moves_only_sessions_towards_the_grown_version():
    before = versions_of(route_with({"v1": 50, "v2": 50}))
    after = versions_of(route_with({"v1": 60, "v2": 40}))
    moved = [user for user in USERS if before[user] != after[user]]
    assert all(before[user] == "v2" and after[user] == "v1" for user in moved)
    assert 100 < len(moved) < 300  # about the 10% that has to move


def test_a_version_that_stops_serving_moves_only_its_own_sessions():
    before = versions_of(route_with({"v1": 40, "v2": 30, "v3": 30}))
    after = versions_of(route_with({"v1": 40, "v2": 30, "v3": 30}, ready=("v1", "v2")))
    for user in USERS:
        if before[user] != "v3":
            assert after[user] == before[user]
    assert set(after.values()) == {"v1", "v2"}


def test_requests_without_a_key_still_split_exactly_by_the_deck():
    route = route_with({"v1": 70, "v2": 30})
    balancer = Balancer(random.Random(3).random)
    unkeyed = []
    for index in range(100):
        balancer.pick(route, session=session_key({"user": f"u{index}"}, None))  # interleaved
        picked = balancer.pick(route)
        assert picked is not None
        unkeyed.append(picked[0].model)
    assert Counter(unkeyed) == {"v1": 70, "v2": 30}


def test_the_session_header_wins_over_the_user_field():
    assert session_key({"user": "alice"}, b"s-1") == session_key({"user": "bob"}, b"s-1")
    assert session_key({"user": "alice"}, None) != session_key({"user": "bob"}, None)
    assert session_key({}, None) is None
    assert session_key({"user": ""}, None) is None
    assert session_key({"user": 7}, None) is None


async def test_the_gateway_sticks_a_user_and_a_session_header_to_one_version():
    async def respond(url):
        return json_response({"url": url})

    transport = ScriptedTransport(respond)
    replicas = [replica("v1", A), replica("v2", B)]
    routes = RouteSource(
        RouteTable.from_endpoints([endpoint("chat", {"v1": 50, "v2": 50}, replicas)])
    )
    app = create_gateway(routes, authenticate=accept_test_token, transport=transport)
    message = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    for user in ("alice", "bob", "carol", "dave"):
        urls = set()
        for _ in range(6):
            exchange = await drive(app, "POST", CHAT, body={**message, "user": user})
            urls.add(exchange.json()["url"])
        assert len(urls) == 1
    for session in (b"s-1", b"s-2", b"s-3"):
        urls = set()
        for user in ("alice", "bob", "carol"):
            exchange = await drive(
                app,
                "POST",
                CHAT,
                body={**message, "user": user},
                headers=[(b"x-session-id", session)],
            )
            urls.add(exchange.json()["url"])
        assert len(urls) == 1
