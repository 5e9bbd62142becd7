"""Streamed chat replies: SSE events parsed, pieces yielded as they come, every failure typed.

The network is an ``httpx.MockTransport``: the gateway's answers are written out byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest

from corral.client import (
    CompletionError,
    GatewayClient,
    IncompleteStream,
    ServerUnreachable,
    SseEvent,
    iter_sse,
)

BASE = "http://corral.test/v1"
SSE_HEADERS = {"content-type": "text/event-stream"}


def chunk(content: str | None = None, finish: str | None = None, **delta: object) -> bytes:
    if content is not None:
        delta["content"] = content
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"object": "chat.completion.chunk", "choices": [choice]}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def gateway(handler: Callable[[httpx.Request], httpx.Response]) -> GatewayClient:
    return GatewayClient(BASE, "secret-token", transport=httpx.MockTransport(handler))


def streaming(*parts: bytes) -> Callable[[httpx.Request], httpx.Response]:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE_HEADERS, content=iter(parts))

    return handler


def reply_of(
    client: GatewayClient, max_tokens: int | None = None, temperature: float | None = None
) -> tuple[list[str], str | None]:
    messages = [{"role": "user", "content": "hi"}]
    with (
        client,
        client.stream_chat(
            "chat", messages, max_tokens=max_tokens, temperature=temperature
        ) as stream,
    ):
        return list(stream), stream.finish_reason


def test_sse_joins_data_lines_and_skips_comments_and_unknown_fields() -> None:
    lines = [": keep-alive", "event: note", "id: 7", "data: first", "data:second", "retry: 5", ""]
    lines += ['data: {"a": 1}', "", "data: cut off at the end"]
    assert list(iter_sse(lines)) == [
        SseEvent("first\nsecond", "note", "7"),
        SseEvent('{"a": 1}', "message", "7"),
    ]


def test_sse_blank_lines_without_data_dispatch_nothing() -> None:
    assert list(iter_sse(["", "", "event: lonely", "", "data:", ""])) == [SseEvent("")]


def test_pieces_arrive_in_order_and_done_ends_the_stream() -> None:
    handler = streaming(
        b": ping\n\n",
        chunk(role="assistant"),
        chunk("Hel"),
        chunk("lo"),
        chunk(finish="stop"),
        b"data: [DONE]\n\n",
    )
    assert reply_of(gateway(handler)) == (["Hel", "lo"], "stop")


def test_events_split_across_network_chunks_and_crlf_line_endings() -> None:
    whole = chunk("Hi").replace(b"\n", b"\r\n") + chunk(finish="length") + b"data: [DONE]\r\n\r\n"
    pieces = [whole[i : i + 7] for i in range(0, len(whole), 7)]
    assert reply_of(gateway(streaming(*pieces))) == (["Hi"], "length")


def test_a_finish_reason_then_end_of_body_is_complete_without_done() -> None:
    assert reply_of(gateway(streaming(chunk("ok"), chunk(finish="stop")))) == (["ok"], "stop")


def test_the_request_is_a_streamed_chat_completion_with_the_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return streaming(chunk("x", finish="stop"))(request)

    reply_of(gateway(handler), max_tokens=5, temperature=0.5)
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/chat/completions"
    assert request.headers["authorization"] == "Bearer secret-token"
    assert orjson.loads(request.content) == {
        "model": "chat",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "max_tokens": 5,
        "temperature": 0.5,
    }


def openai_error(status: int, message: str, code: str) -> Callable[[httpx.Request], httpx.Response]:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return lambda _: httpx.Response(status, json=body)


def test_unknown_endpoint_is_the_gateways_404_message() -> None:
    message = "The model 'nope' does not exist: name an Endpoint as 'name'"
    with pytest.raises(CompletionError) as raised:
        reply_of(gateway(openai_error(404, message, "model_not_found")))
    assert raised.value.message == message
    assert (raised.value.status, raised.value.error_code) == (404, "model_not_found")


def test_not_ready_is_503_with_the_reason() -> None:
    message = "Endpoint 'chat' has no ready replica (smollm2-135m: r0 Starting)"
    with pytest.raises(CompletionError, match=r"no ready replica \(smollm2-135m: r0 Starting\)"):
        reply_of(gateway(openai_error(503, message, "no_ready_replica")))


def test_an_error_body_that_is_not_json_keeps_its_text() -> None:
    with pytest.raises(CompletionError, match="HTTP 502: upstream fell over"):
        reply_of(gateway(lambda _: httpx.Response(502, text="upstream fell over")))


def test_an_error_event_mid_stream_raises_its_message() -> None:
    error = b'data: {"error": {"message": "context window exceeded", "code": "ctx"}}\n\n'
    with pytest.raises(CompletionError, match="context window exceeded"):
        reply_of(gateway(streaming(chunk("partial"), error)))


def test_a_stream_that_stops_without_a_finish_reason_is_incomplete() -> None:
    with pytest.raises(IncompleteStream, match="without a finish reason after 3 characters"):
        reply_of(gateway(streaming(chunk("abc"))))


def test_done_without_a_finish_reason_is_a_reply_cut_short() -> None:
    with pytest.raises(IncompleteStream, match="without a finish reason after 2 characters"):
        reply_of(gateway(streaming(chunk("ab"), b"data: [DONE]\n\n")))


def test_a_connection_dropped_mid_reply_is_incomplete() -> None:
    def parts() -> Iterator[bytes]:
        yield chunk("so far")
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE_HEADERS, content=parts())

    with pytest.raises(IncompleteStream, match="cut off after 6 characters: peer closed"):
        reply_of(gateway(handler))


def test_an_event_that_is_not_json_is_refused() -> None:
    with pytest.raises(IncompleteStream, match="not JSON: 'hello'"):
        reply_of(gateway(streaming(b"data: hello\n\n")))


def test_no_server_is_unreachable_naming_the_url() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ServerUnreachable, match=f"cannot reach the gateway at {BASE}/chat"):
        reply_of(gateway(refuse))


def test_model_lookup_names_a_missing_endpoint() -> None:
    client = gateway(openai_error(404, "The model 'x' does not exist", "model_not_found"))
    with client, pytest.raises(CompletionError, match="The model 'x' does not exist"):
        client.model("x")
