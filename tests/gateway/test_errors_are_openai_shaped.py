"""Every refusal is an OpenAI-shaped error with the right status; bad input never gives a 5xx."""

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

A = "http://127.0.0.1:9001"
B = "http://127.0.0.1:9002"
CHAT = "/v1/chat/completions"
GOOD = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


async def answer_ok(_url):
    return json_response({"ok": True})


def gateway(*endpoints, respond=answer_ok, **options):
    transport = ScriptedTransport(respond)
    routes = RouteSource(RouteTable.from_endpoints(endpoints))
    app = create_gateway(routes, authenticate=accept_test_token, transport=transport, **options)
    return app, transport


def ready_chat():
    return endpoint("chat", {"v1": 100}, [replica("v1", A)])


def assert_error(exchange, status, *, code=None, param=None, type_="invalid_request_error"):
    assert exchange.status == status
    assert exchange.headers["content-type"] == "application/json"
    error = exchange.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_
    assert error["code"] == code
    assert error["param"] == param
    assert error["message"]
    return error["message"]


@pytest.mark.parametrize(
    ("token", "message"),
    [(None, "missing API key"), ("wrong", "invalid API key")],
    ids=["missing", "wrong"],
)
@pytest.mark.parametrize(("method", "path"), [("POST", CHAT), ("GET", "/v1/models")])
async def test_bad_or_missing_token_is_401(token, message, method, path):
    app, transport = gateway(ready_chat())
    exchange = await drive(app, method, path, body=GOOD, token=token)
    assert message in assert_error(exchange, 401, code="invalid_api_key")
    assert exchange.headers["www-authenticate"] == "Bearer"
    assert transport.calls == []


async def test_non_bearer_scheme_is_401():
    app, _ = gateway(ready_chat())
    exchange = await drive(
        app, "POST", CHAT, body=GOOD, token=None, headers=[(b"authorization", b"Basic dXNlcg==")]
    )
    assert_error(exchange, 401, code="invalid_api_key")


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (b'{"model": "chat",', None, "request body is not valid JSON: "),
        (b'{"model": "ch\xffat"}', None, "request body is not valid UTF-8 (bad byte at offset 13)"),
        (b"", None, "request body is empty: expected a JSON object"),
        (b'["chat"]', None, "request body must be a JSON object, got list"),
        (b'{"messages": []}', "model", "you must provide a model parameter"),
        (b'{"model": 7}', "model", "model: must be a non-empty string naming an Endpoint, got 7"),
        (b'{"model": ""}', "model", "model: must be a non-empty string"),
    ],
    ids=["json", "utf8", "empty", "array", "no-model", "model-int", "model-empty"],
)
async def test_malformed_body_is_400(body, param, message):
    app, transport = gateway(ready_chat())
    exchange = await drive(app, "POST", CHAT, body=body)
    assert assert_error(exchange, 400, param=param).startswith(message)
    assert transport.calls == []


async def test_non_numeric_content_length_is_400():
    app, _ = gateway(ready_chat())
    exchange = await drive(
        app, "POST", CHAT, pieces=[b"{}"], headers=[(b"content-length", b"12abc")]
    )
    assert "Content-Length header '12abc' is not a number" in assert_error(exchange, 400)


async def test_unknown_model_is_404_model_not_found():
    app, transport = gateway(ready_chat())
    exchange = await drive(app, "POST", CHAT, body={**GOOD, "model": "team-x/chat"})
    message = assert_error(exchange, 404, code="model_not_found", param="model")
    assert "'team-x/chat' does not exist" in message
    assert transport.calls == []


async def test_unknown_path_is_404_and_wrong_method_is_405():
    app, _ = gateway(ready_chat())
    missing = await drive(app, "POST", "/v1/images/generations", body=GOOD)
    assert (
        assert_error(missing, 404, code="unknown_url")
        == "Unknown request URL: POST /v1/images/generations"
    )
    wrong = await drive(app, "GET", CHAT)
    assert_error(wrong, 405, code="method_not_allowed")
    assert wrong.headers["allow"] == "POST"


async def test_declared_oversize_body_is_413_before_reading():
    app, transport = gateway(ready_chat(), max_body_bytes=64)
    exchange = await drive(app, "POST", CHAT, body=b"x" * 65)
    message = assert_error(exchange, 413, code="request_too_large")
    assert message == "request body is larger than the limit of 64 bytes"
    assert transport.calls == []


async def test_streamed_upload_without_length_is_counted_to_413():
    app, transport = gateway(ready_chat(), max_body_bytes=64)
    exchange = await drive(app, "POST", CHAT, pieces=[b"x" * 40, b"x" * 40, b"x" * 40])
    assert_error(exchange, 413, code="request_too_large")
    within = await drive(app, "POST", CHAT, pieces=[b'{"model":', b'"chat"}'])
    assert within.status == 200
    assert transport.calls[0][3] == b'{"model":"v1"}'  # reassembled, model set to the version


async def test_no_ready_replica_is_503_with_retry_after_and_reason():
    starting = endpoint("chat", {"v1": 100}, [replica("v1", A, ready=False, state="Starting")])
    app, transport = gateway(starting, retry_after_seconds=7)
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    message = assert_error(exchange, 503, code="no_ready_replica", type_="server_error")
    assert message == "Endpoint 'chat' has no ready replica (v1: v1-9001 Starting)"
    assert exchange.headers["retry-after"] == "7"
    assert transport.calls == []


async def test_every_try_failing_is_502_naming_each_replica():
    async def refuse(url):
        raise UpstreamUnreachable(f"cannot connect to {url}: refused")

    app, transport = gateway(
        endpoint("chat", {"v1": 100}, [replica("v1", A), replica("v1", B)]), respond=refuse
    )
    exchange = await drive(app, "POST", CHAT, body=GOOD)
    message = assert_error(exchange, 502, code="upstream_unavailable", type_="server_error")
    assert message.startswith("Endpoint 'chat': every try failed (")
    assert f"{A}/v1: cannot connect" in message
    assert f"{B}/v1: cannot connect" in message
    assert len(transport.calls) == 2
