"""A replica failing N tries in a row sits out a while (longer each time), never half of them."""

import pytest
from gateway_harness import FakeClock, endpoint, replica

from corral.gateway import Balancer, RouteTable

A = "http://127.0.0.1:9001"
B = "http://127.0.0.1:9002"
C = "http://127.0.0.1:9003"
D = "http://127.0.0.1:9004"
OUTLIERS = {"consecutiveFailures": 3, "baseEjectionSeconds": 30}


def route_over(*addresses, outliers=OUTLIERS):
    replicas = [replica("v1", address) for address in addresses]
    routing = {"outlierDetection": outliers, "strategy": "round-robin"}
    route = RouteTable.from_endpoints([endpoint("chat", {"v1": 100}, replicas, routing=routing)])
    found = route.lookup("chat")
    assert found is not None
    return found


def fail(balancer, route, address, times):
    version = route.serving[0]
    return [balancer.failed(route, version, address + "/v1") for _ in range(times)]


def picked(balancer, route, count=40):
    return {balancer.choose(route) for _ in range(count)}


def test_consecutive_failures_eject_a_replica_until_its_time_is_up():
    route, clock = route_over(A, B, C, D), FakeClock()
    balancer = Balancer(clock=clock)
    assert fail(balancer, route, A, 3) == [False, False, True]
    assert f"{A}/v1" not in picked(balancer, route)
    clock.now += 29
    assert f"{A}/v1" not in picked(balancer, route)
    clock.now += 2
    assert f"{A}/v1" in picked(balancer, route)


def test_a_success_resets_the_count():
    route = route_over(A, B)
    balancer = Balancer(clock=FakeClock())
    fail(balancer, route, A, 2)
    balancer.succeeded(f"{A}/v1")
    assert fail(balancer, route, A, 2) == [False, False]
    assert f"{A}/v1" in picked(balancer, route)


def test_no_more_than_half_of_a_versions_replicas_are_ejected():
    route = route_over(A, B, C, D)
    balancer = Balancer(clock=FakeClock())
    for address in (A, B, C):
        fail(balancer, route, address, 3)
    assert picked(balancer, route) == {f"{C}/v1", f"{D}/v1"}
    lone = route_over(A)
    assert fail(balancer, lone, A, 5) == [False] * 5
    assert picked(balancer, lone) == {f"{A}/v1"}


def test_repeated_ejections_last_longer_until_the_replica_serves_well_again():
    route, clock = route_over(A, B), FakeClock()
    balancer = Balancer(clock=clock)
    fail(balancer, route, A, 3)
    clock.now += 31  # back after 30 s
    assert fail(balancer, route, A, 3)[-1]
    clock.now += 31
    assert f"{A}/v1" not in picked(balancer, route)  # the second time is 60 s
    clock.now += 30
    assert f"{A}/v1" in picked(balancer, route)
    clock.now += 200  # it has served well for longer than it was out
    balancer.succeeded(f"{A}/v1")
    fail(balancer, route, A, 3)
    clock.now += 31
    assert f"{A}/v1" in picked(balancer, route)  # 30 s again


def test_ejected_replicas_are_also_skipped_on_retries():
    route = route_over(A, B, C, D)
    balancer = Balancer(clock=FakeClock())
    fail(balancer, route, A, 3)
    for _ in range(20):
        chosen = balancer.pick(route, exclude=[f"{B}/v1"])
        assert chosen is not None
        assert chosen[1] in {f"{C}/v1", f"{D}/v1"}


@pytest.mark.parametrize(
    ("outliers", "field"),
    [
        ({"consecutiveFailures": 0}, "consecutiveFailures"),
        ({"maxEjectionPercent": 80}, "maxEjectionPercent"),
        ({"baseEjectionSeconds": 0}, "baseEjectionSeconds"),
    ],
)
def test_outlier_settings_are_checked(outliers, field):
    bad = endpoint("chat", {"v1": 100}, [], routing={"outlierDetection": outliers})
    with pytest.raises(ValueError, match=f"spec.routing.outlierDetection.{field}"):
        RouteTable.from_endpoints([bad])
