"""Route tables route only to ready replicas; versions are picked by weight over those."""

import random
import re
from collections import Counter

import orjson
import pytest
from gateway_harness import endpoint
from gateway_harness import replica as replica_entry

from corral.gateway import Balancer, RouteSource, RouteTable

# Replica API bases: what the balancer hands out.
A = "http://127.0.0.1:9001/v1"
B = "http://127.0.0.1:9002/v1"
C = "http://127.0.0.1:9003/v1"


def replica(model, base, **options):
    return replica_entry(model, base.removesuffix("/v1"), api_base=base, **options)


def scripted_random(*values: float):
    remaining = list(values)
    return lambda: remaining.pop(0)


def route_for(*endpoints, name="chat"):
    route = RouteTable.from_endpoints(endpoints).lookup(name)
    assert route is not None
    return route


def test_weights_split_exactly_within_each_deck_in_random_order():
    route = route_for(endpoint("chat", {"v1": 80, "v2": 20}, [replica("v1", A), replica("v2", B)]))
    balancer = Balancer(random.Random(7).random)
    decks = [[balancer.choose(route) for _ in range(100)] for _ in range(3)]
    for deck in decks:
        assert Counter(deck) == {A: 80, B: 20}
    assert decks[0] != decks[1]  # shuffled: which request lands where is not fixed
    assert decks[0][:20] != [B] * 20
    assert decks[0][:80] != [A] * 80


def test_seeded_random_source_splits_traffic_by_weight_and_repeats_exactly():
    route = route_for(endpoint("chat", {"v1": 80, "v2": 20}, [replica("v1", A), replica("v2", B)]))
    balancer = Balancer(random.Random(42).random)
    picks = [balancer.choose(route) for _ in range(5000)]
    counts = Counter(picks)
    assert 3800 < counts[A] < 4200
    assert counts[A] + counts[B] == 5000
    replay = Balancer(random.Random(42).random)
    assert [replay.choose(route) for _ in range(5000)] == picks


def test_version_with_no_ready_replica_gives_its_share_to_the_others():
    route = route_for(
        endpoint(
            "chat",
            {"v1": 70, "v2": 20, "v3": 10},
            [replica("v1", A, ready=False, state="Starting"), replica("v2", B), replica("v3", C)],
        )
    )
    balancer = Balancer(random.Random(3).random)
    picks = [balancer.choose(route) for _ in range(60)]
    assert Counter(picks) == {B: 40, C: 20}


def test_weight_zero_version_takes_no_traffic_even_when_ready():
    route = route_for(endpoint("chat", {"v1": 100, "v2": 0}, [replica("v1", A), replica("v2", B)]))
    balancer = Balancer(scripted_random(0.0, 0.5, 0.999))
    assert {balancer.choose(route) for _ in range(3)} == {A}


def test_unavailable_endpoint_says_why():
    route = route_for(
        endpoint(
            "chat",
            {"v1": 100, "v2": 0, "v3": 50},
            [
                replica("v1", A, ready=False, state="Starting", name="chat-v1-0"),
                replica("v2", B),
                replica("v3", C, ready=True, state="Draining", name="chat-v3-0"),
            ],
        )
    )
    assert Balancer().choose(route) is None
    assert route.unavailable_reason == (
        "Endpoint 'chat' has no ready replica (v1: chat-v1-0 Starting; "
        "v2 has ready replicas but weight 0; v3: chat-v3-0 Draining)"
    )


def test_endpoint_with_no_replicas_yet_is_unavailable():
    route = route_for(endpoint("chat", {"v1": 100}, []))
    assert route.serving == ()
    assert "v1: no replicas yet" in route.unavailable_reason


def test_replicas_of_versions_no_longer_in_spec_are_not_routed():
    route = route_for(endpoint("chat", {"v2": 100}, [replica("v1", A), replica("v2", B)]))
    assert [version.addresses for version in route.versions] == [(B,)]


def test_names_resolve_default_namespace_bare_and_others_qualified():
    table = RouteTable.from_endpoints(
        [
            endpoint("chat", {"v1": 100}, [replica("v1", A)]),
            endpoint("chat", {"v1": 100}, [replica("v1", B)], namespace="team-a"),
        ]
    )
    default, qualified, other = (
        table.lookup("chat"),
        table.lookup("default/chat"),
        table.lookup("team-a/chat"),
    )
    assert default is qualified
    assert default is not None
    assert default.serving[0].addresses == (A,)
    assert other is not None
    assert other.serving[0].addresses == (B,)
    assert table.lookup("team-a") is None
    assert table.lookup("nope/chat") is None


def test_models_listing_is_precompiled_in_openai_shape():
    table = RouteTable.from_endpoints(
        [
            endpoint("zeta", {"v1": 100}, []),
            endpoint("chat", {"v1": 100}, [replica("v1", A)], namespace="team-a"),
        ]
    )
    assert orjson.loads(table.models_body) == {
        "object": "list",
        "data": [
            {"id": "team-a/chat", "object": "model", "created": 1767323045, "owned_by": "corral"},
            {"id": "zeta", "object": "model", "created": 1767323045, "owned_by": "corral"},
        ],
    }
    assert orjson.loads(RouteTable().models_body) == {"object": "list", "data": []}


def test_route_source_swaps_the_whole_table():
    source = RouteSource()
    assert source.current.lookup("chat") is None
    old = source.current
    source.update(RouteTable.from_endpoints([endpoint("chat", {"v1": 100}, [replica("v1", A)])]))
    assert source.current.lookup("chat") is not None
    assert old.lookup("chat") is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda ep: ep["status"]["replicas"][0].update(apiBase="127.0.0.1:1"),
            "Endpoint default/chat: status.replicas[0].apiBase: '127.0.0.1:1' is not an http(s) "
            "URL",
        ),
        (
            lambda ep: ep["spec"]["models"][0].update(weight=101),
            "Endpoint default/chat: spec.models[0].weight: must be 0..100",
        ),
        (
            lambda ep: ep["spec"].update(routing={"strategy": "random"}),
            "Endpoint default/chat: spec.routing.strategy: 'random' is not one of",
        ),
        (
            lambda ep: ep["spec"].update(models=[]),
            "Endpoint default/chat: spec.models: must be a non-empty list",
        ),
        (
            lambda ep: ep["status"].update(replicas=["x"]),
            "Endpoint default/chat: status.replicas[0]: must be an object",
        ),
    ],
    ids=["address", "weight", "strategy", "models", "replica"],
)
def test_malformed_endpoint_names_itself_and_the_field(mutate, message):
    ep = endpoint("chat", {"v1": 100}, [replica("v1", A)])
    mutate(ep)
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        RouteTable.from_endpoints([ep])


def test_duplicate_endpoint_is_refused():
    ep = endpoint("chat", {"v1": 100}, [])
    with pytest.raises(ValueError, match="Endpoint default/chat: appears more than once"):
        RouteTable.from_endpoints([ep, ep])
