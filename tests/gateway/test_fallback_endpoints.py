"""An Endpoint that cannot answer hands the request to its first fallback that can, once."""

import orjson
import pytest
from gateway_harness import (
    ScriptedTransport,
    accept_test_token,
    drive,
    endpoint,
    json_response,
    replica,
)

from corral.gateway import RouteSource, RouteTable, UpstreamUnreachable, create_gateway

MAIN = "http://127.0.0.1:9001"
SPARE = "http://127.0.0.1:9002"
OTHER = "http://127.0.0.1:9003"
CHAT = "/v1/chat/completions"
GOOD = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def gateway_for(objects, respond):
    transport = ScriptedTransport(respond)
    table = RouteTable.from_endpoints(objects)
    app = create_gateway(RouteSource(table), authenticate=accept_test_token, transport=transport)
    return app, transport


def chat(fallback, *, ready=True, namespace=None):
    replicas = [replica("small", MAIN, ready=ready)]
    routing = {"fallback": fallback}
    return endpoint("chat", {"small": 100}, replicas, routing=routing, namespace=namespace)


def spare(name="spare", *, ready=True, fallback=(), namespace=None, address=SPARE):
    replicas = [replica("large", address, ready=ready)]
    routing = {"fallback": list(fallback)}
    return endpoint(name, {"large": 100}, replicas, routing=routing, namespace=namespace)


async def echo(url):
    return json_response({"url": url})


async def test_no_ready_replica_sends_the_request_to_the_fallback():
    app, transport = gateway_for([chat(["spare"], ready=False), spare()], echo)
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    assert exchange.status == 200
    assert exchange.headers["x-corral-fallback"] == "spare"
    assert exchange.json() == {"url": f"{SPARE}{CHAT}"}
    assert orjson.loads(transport.calls[0][3])["model"] == "large"


async def test_failed_tries_and_server_errors_fall_back():
    async def main_unreachable(url):
        if url.startswith(MAIN):
            raise UpstreamUnreachable("refused")
        return await echo(url)

    async def main_broken(url):
        if url.startswith(MAIN):
            return json_response({"error": "boom"}, status=500)
        return await echo(url)

    for respond in (main_unreachable, main_broken):
        app, transport = gateway_for([chat(["spare"]), spare()], respond)
        exchange = await drive(app, "POST", CHAT, body=GOOD)
        assert exchange.status == 200
        assert exchange.headers["x-corral-fallback"] == "spare"
        assert [call[1] for call in transport.calls] == [f"{MAIN}{CHAT}", f"{SPARE}{CHAT}"]
        assert app.balancer.in_flight == {}


async def test_a_served_request_carries_no_fallback_header():
    app, _ = gateway_for([chat(["spare"]), spare()], echo)
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    assert exchange.json() == {"url": f"{MAIN}{CHAT}"}
    assert "x-corral-fallback" not in exchange.headers


async def test_the_first_fallback_with_a_ready_replica_is_taken():
    objects = [
        chat(["spare", "other"], ready=False),
        spare(ready=False),
        spare("other", address=OTHER),
    ]
    app, _ = gateway_for(objects, echo)
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    assert exchange.headers["x-corral-fallback"] == "other"
    assert exchange.json() == {"url": f"{OTHER}{CHAT}"}


async def test_fallbacks_do_not_chain_or_loop():
    objects = [chat(["spare"], ready=False), spare(ready=False, fallback=["chat", "other"])]
    objects.append(spare("other", address=OTHER))
    app, transport = gateway_for(objects, echo)
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    assert exchange.status == 503
    assert exchange.json()["error"]["code"] == "no_ready_replica"
    assert "Endpoint 'chat' has no ready replica" in exchange.json()["error"]["message"]
    assert transport.calls == []


async def test_when_the_fallback_fails_too_the_upstream_answer_is_relayed():
    async def busy(url):
        return json_response({"busy": url}, status=429)

    app, _ = gateway_for([chat(["spare"]), spare()], busy)
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    assert exchange.status == 429
    assert exchange.json() == {"busy": f"{SPARE}{CHAT}"}
    assert exchange.headers["x-corral-fallback"] == "spare"


async def test_a_bare_fallback_name_is_in_the_endpoints_own_namespace():
    objects = [
        chat(["spare"], ready=False, namespace="team"),
        spare(namespace="team"),
        spare(address=OTHER),  # default/spare must not be taken
    ]
    app, _ = gateway_for(objects, echo)
    exchange = await drive(app, "POST", CHAT, body={**GOOD, "model": "team/chat"})
    assert exchange.headers["x-corral-fallback"] == "team/spare"
    assert exchange.json() == {"url": f"{SPARE}{CHAT}"}


def test_an_endpoint_naming_itself_as_fallback_skips_itself():
    table = RouteTable.from_endpoints([chat(["chat", "spare", "default/chat"]), spare()])
    route = table.lookup("chat")
    assert route is not None
    assert route.policy.fallback == ("default/spare",)


@pytest.mark.parametrize(
    ("fallback", "problem"),
    [
        (["a/b/c"], "is not 'name' or 'namespace/name'"),
        (["spare", "spare"], "each Endpoint may appear once"),
        ("spare", "spec.routing.fallback"),
    ],
)
def test_bad_fallback_lists_are_refused(fallback, problem):
    with pytest.raises(ValueError, match="Endpoint default/chat") as raised:
        RouteTable.from_endpoints([chat(fallback)])
    assert problem in str(raised.value)
