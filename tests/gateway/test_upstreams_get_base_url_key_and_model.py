"""Upstream calls go to the replica's API base, carry the upstream's own key, name the version."""

import orjson
from gateway_harness import (
    ScriptedTransport,
    accept_test_token,
    drive,
    endpoint,
    json_response,
    replica,
)

from corral.gateway import RouteSource, RouteTable, create_gateway

CHAT = "/v1/chat/completions"
GOOD = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
UPSTREAM = "https://llm.example.com/openai/v1"


def upstream_endpoint(*, secret: str | None = "upstream-key", **runtime: object):
    ep = endpoint(
        "chat",
        {"gpt-small": 100},
        [replica("gpt-small", UPSTREAM, api_base=UPSTREAM, name="default.chat.gpt-small.0")],
    )
    ep["spec"]["runtime"] = {"type": "openai", "baseURL": UPSTREAM, **runtime}
    if secret is not None:
        ep["spec"]["runtime"]["secretRef"] = secret
    return ep


def gateway_for(ep, api_keys=None):
    transport = ScriptedTransport(lambda url: _answer(url))
    routes = RouteSource(RouteTable.from_endpoints([ep], api_keys))
    return create_gateway(routes, authenticate=accept_test_token, transport=transport), transport


async def _answer(url):
    return json_response({"url": url})


async def test_upstream_base_url_replaces_v1_and_its_key_is_sent():
    app, transport = gateway_for(upstream_endpoint(), {"default/upstream-key": "sk-upstream"})
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    assert exchange.status == 200
    ((method, url, headers, body),) = transport.calls
    assert (method, url) == ("POST", f"{UPSTREAM}/chat/completions")
    assert headers == [
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer sk-upstream"),
    ]
    assert orjson.loads(body) == {**GOOD, "model": "gpt-small"}


async def test_process_replica_and_a_legacy_entry_without_api_base_both_use_v1():
    legacy = replica("v1", "http://127.0.0.1:9002")
    del legacy["apiBase"]  # written before the field existed
    ep = endpoint("chat", {"v1": 100}, [legacy])
    app, transport = gateway_for(ep)
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    assert exchange.status == 200
    assert transport.calls[0][1] == f"http://127.0.0.1:9002{CHAT}"
    assert transport.calls[0][2] == [(b"content-type", b"application/json")]


async def test_a_legacy_upstream_entry_uses_its_address_as_the_base():
    ep = upstream_endpoint()
    del ep["status"]["replicas"][0]["apiBase"]
    app, transport = gateway_for(ep, {"default/upstream-key": "sk-upstream"})
    assert (await drive(app, "POST", CHAT, body=GOOD)).status == 200
    assert transport.calls[0][1] == f"{UPSTREAM}/chat/completions"


async def test_missing_secret_means_no_call_and_a_503_naming_it():
    app, transport = gateway_for(upstream_endpoint(), {})
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    assert exchange.status == 503
    assert exchange.headers["retry-after"] == "5"
    assert exchange.json()["error"]["message"] == (
        "Endpoint 'chat' cannot call its upstream: "
        "Secret default/upstream-key is missing or has no apiKey"
    )
    assert transport.calls == []


def test_the_key_stays_out_of_reprs_and_reasons():
    table = RouteTable.from_endpoints([upstream_endpoint()], {"default/upstream-key": "sk-secret"})
    route = table.lookup("chat")
    assert route is not None
    assert "sk-secret" not in repr(route)
    assert "sk-secret" not in repr(table.endpoints)
    bad = RouteTable.from_endpoints([upstream_endpoint()], {"default/upstream-key": "sk-\r\nx"})
    refused = bad.lookup("chat")
    assert refused is not None
    assert refused.serving == ()
    assert "sk-" not in refused.unavailable_reason
    assert "cannot carry" in refused.unavailable_reason


async def test_a_process_runtime_api_key_option_is_sent():
    ep = endpoint("chat", {"v1": 100}, [replica("v1", "http://127.0.0.1:9003")])
    ep["spec"]["runtime"] = {"type": "llamacpp", "options": {"api_key": "local-key"}}
    app, transport = gateway_for(ep)
    await drive(app, "POST", CHAT, body=GOOD)
    assert (b"authorization", b"Bearer local-key") in transport.calls[0][2]


async def test_each_version_is_asked_for_by_its_own_name():
    ep = endpoint(
        "chat",
        {"small": 1, "large": 1},
        [replica("small", "http://127.0.0.1:9004"), replica("large", "http://127.0.0.1:9005")],
    )
    draws = iter([0.1])  # one shuffle of a two-card deck: small is dealt first
    transport = ScriptedTransport(_answer)
    app = create_gateway(
        RouteSource(RouteTable.from_endpoints([ep])),
        authenticate=accept_test_token,
        transport=transport,
        random=lambda: next(draws),
    )
    for _ in range(2):
        assert (await drive(app, "POST", CHAT, body=GOOD)).status == 200
    asked = [(url, orjson.loads(body)["model"]) for _, url, _, body in transport.calls]
    assert asked == [
        (f"http://127.0.0.1:9004{CHAT}", "small"),
        (f"http://127.0.0.1:9005{CHAT}", "large"),
    ]


def test_unready_replica_without_an_address_yet_does_not_break_the_endpoint():
    pending = {"name": "default.chat.v1.0", "model": "v1", "address": "", "ready": False}
    pending["state"] = "Pending"
    route = RouteTable.from_endpoints([endpoint("chat", {"v1": 100}, [pending])]).lookup("chat")
    assert route is not None
    assert route.unavailable_reason == (
        "Endpoint 'chat' has no ready replica (v1: default.chat.v1.0 Pending)"
    )


def test_unavailable_reason_adds_the_controllers_ready_condition():
    ep = endpoint("chat", {"v1": 100}, [])
    ep["status"]["conditions"] = [
        {
            "type": "Ready",
            "status": "False",
            "reason": "ScaledToZero",
            "message": "spec.replicas is 0",
        }
    ]
    route = RouteTable.from_endpoints([ep]).lookup("chat")
    assert route is not None
    assert route.unavailable_reason == (
        "Endpoint 'chat' has no ready replica (v1: no replicas yet); "
        "ScaledToZero: spec.replicas is 0"
    )
