"""Within a version, the replica with the fewest requests in flight wins; ties go in turn."""

from gateway_harness import endpoint
from gateway_harness import replica as replica_entry

from corral.gateway import Balancer, RouteTable
from corral.gateway.balancer import AFFINITY_SLACK, affinity_key

# Replica API bases: what the balancer hands out.
A = "http://127.0.0.1:9001/v1"
B = "http://127.0.0.1:9002/v1"
C = "http://127.0.0.1:9003/v1"


def replica(model, base, **options):
    return replica_entry(model, base.removesuffix("/v1"), api_base=base, **options)


def three_replicas(strategy=None):
    table = RouteTable.from_endpoints(
        [
            endpoint(
                "chat",
                {"v1": 100},
                [replica("v1", A), replica("v1", B), replica("v1", C)],
                strategy=strategy,
            )
        ]
    )
    route = table.lookup("chat")
    assert route is not None
    return route


def test_least_outstanding_replica_is_chosen():
    route, balancer = three_replicas(), Balancer()
    for address in (A, A, B, C, C, C):
        balancer.acquire(address)
    assert balancer.choose(route) == B
    balancer.acquire(B)
    balancer.acquire(B)
    assert balancer.choose(route) == A


def test_ties_are_broken_in_turn():
    route, balancer = three_replicas(), Balancer()
    assert [balancer.choose(route) for _ in range(6)] == [A, B, C, A, B, C]
    balancer.acquire(A)
    assert {balancer.choose(route) for _ in range(4)} == {B, C}


def test_release_returns_the_count_to_zero():
    balancer = Balancer()
    balancer.acquire(A)
    balancer.acquire(A)
    balancer.release(A)
    assert balancer.in_flight == {A: 1}
    balancer.release(A)
    assert balancer.in_flight == {}


def test_round_robin_strategy_ignores_load():
    route, balancer = three_replicas("round-robin"), Balancer()
    balancer.acquire(A)
    balancer.acquire(A)
    assert [balancer.choose(route) for _ in range(4)] == [A, B, C, A]


def test_excluded_replicas_are_skipped_and_exhaustion_gives_none():
    route, balancer = three_replicas(), Balancer()
    assert {balancer.choose(route, exclude=[A]) for _ in range(4)} == {B, C}
    assert balancer.choose(route, exclude=[A, B]) == C
    assert balancer.choose(route, exclude=[A, B, C]) is None


def test_prefix_affinity_keeps_a_prompt_on_one_replica():
    route, balancer = three_replicas("prefix-affinity"), Balancer()
    system = {"messages": [{"role": "system", "content": "You are terse."}, {"content": "hi"}]}
    key = affinity_key(system)
    assert key is not None
    chosen = {balancer.choose(route, key) for _ in range(5)}
    assert len(chosen) == 1
    spread = {balancer.choose(route, affinity_key({"prompt": f"p{i}"})) for i in range(60)}
    assert spread == {A, B, C}


def test_prefix_affinity_yields_to_least_outstanding_when_the_preferred_is_busy():
    route, balancer = three_replicas("prefix-affinity"), Balancer()
    key = affinity_key({"prompt": "shared prefix"})
    preferred = balancer.choose(route, key)
    assert preferred is not None
    for _ in range(AFFINITY_SLACK):
        balancer.acquire(preferred)
    assert balancer.choose(route, key) == preferred
    balancer.acquire(preferred)
    assert balancer.choose(route, key) != preferred


def test_affinity_key_reads_first_message_or_prompt():
    assert affinity_key({"messages": [{"content": "x"}, {"content": "y"}]}) == affinity_key(
        {"messages": [{"content": "x"}, {"content": "z"}]}
    )
    assert affinity_key({"prompt": ["a", "b"]}) is not None
    assert affinity_key({"model": "chat"}) is None
