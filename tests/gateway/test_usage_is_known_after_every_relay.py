"""After the forwarding stage, ``call.usage`` says what the answer used; streamed requests ask
their upstream for the usage chunk, and clients that did not ask never see it."""

import asyncio

import orjson
import pytest
from gateway_harness import (
    Exchange,
    ScriptedTransport,
    accept_test_token,
    drive,
    endpoint,
    iterate,
    json_response,
    replica,
)

from corral.gateway import Call, RouteSource, RouteTable, UpstreamResponse, create_gateway
from corral.gateway.usage_watch import UsageWatch, output_cap

A = "http://127.0.0.1:9001"
CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]
SSE = [(b"content-type", b"text/event-stream")]
USAGE = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}


def event(payload: dict, end: bytes = b"\n\n") -> bytes:
    return b"data: " + orjson.dumps(payload) + end


def delta(text: str) -> dict:
    return {"id": "c", "model": "v1", "choices": [{"index": 0, "delta": {"content": text}}]}


USAGE_EVENT = {"id": "c", "model": "v1", "choices": [], "usage": USAGE}
ASKS_FOR_USAGE = {
    "model": "chat",
    "messages": MESSAGES,
    "stream": True,
    "stream_options": {"include_usage": True},
}


class Seen:
    """A stage that keeps the call, to read what the forwarding stage filled in."""

    def __init__(self) -> None:
        self.call: Call | None = None

    async def __call__(self, call: Call, call_next) -> None:
        self.call = call
        await call_next(call)


def gateway(respond, seen: Seen):
    routes = RouteSource(
        RouteTable.from_endpoints([endpoint("chat", {"v1": 100}, [replica("v1", A)])])
    )
    transport = ScriptedTransport(respond)
    app = create_gateway(routes, authenticate=accept_test_token, transport=transport, stages=[seen])
    return app, transport


def sse_stream(*chunks: bytes):
    async def respond(_url):
        return UpstreamResponse(200, SSE, iterate(*chunks))

    return respond


async def test_non_streamed_usage_is_read_from_the_body():
    seen = Seen()

    async def respond(_url):
        return json_response({"id": "c", "model": "v1", "choices": [], "usage": USAGE})

    app, _ = gateway(respond, seen)
    exchange = await drive(app, "POST", CHAT, body={"model": "chat", "messages": MESSAGES})
    assert exchange.status == 200
    assert seen.call is not None
    assert seen.call.usage is not None
    assert (seen.call.usage.input_tokens, seen.call.usage.output_tokens) == (11, 2)
    assert seen.call.usage.exact
    assert seen.call.upstream_status == 200
    assert seen.call.served_by == f"{A}/v1"


async def test_stream_asks_upstream_for_usage_and_hides_it_from_a_client_that_did_not():
    seen = Seen()
    chunks = [event(delta("Hel")), event(delta("lo")), event(USAGE_EVENT), b"data: [DONE]\n\n"]
    app, transport = gateway(sse_stream(*chunks), seen)
    body = {"model": "chat", "messages": MESSAGES, "stream": True}
    exchange = await drive(app, "POST", CHAT, body=body)
    sent = orjson.loads(transport.calls[0][3])
    assert sent["stream_options"] == {"include_usage": True}
    assert exchange.body == chunks[0] + chunks[1] + chunks[3]
    assert seen.call is not None
    assert seen.call.usage is not None
    assert (seen.call.usage.input_tokens, seen.call.usage.output_tokens) == (11, 2)
    assert seen.call.usage.exact


async def test_stream_keeps_the_usage_chunk_for_a_client_that_asked():
    seen = Seen()
    chunks = [event(delta("Hi")), event(USAGE_EVENT), b"data: [DONE]\n\n"]
    app, transport = gateway(sse_stream(*chunks), seen)
    body = ASKS_FOR_USAGE
    exchange = await drive(app, "POST", CHAT, body=body)
    # Sent as the client wrote it, but for the model: the version's name.
    assert orjson.loads(transport.calls[0][3]) == {**body, "model": "v1"}
    assert exchange.body == b"".join(chunks)


@pytest.mark.parametrize("end", [b"\n\n", b"\r\n\r\n"], ids=["lf", "crlf"])
def test_usage_chunk_is_removed_wherever_the_network_splits_the_stream(end):
    events = [event(delta("a"), end), event(delta("b"), end), event(USAGE_EVENT, end)]
    done = b"data: [DONE]" + end
    stream = b"".join(events) + done
    expected = events[0] + events[1] + done
    for cut in range(1, len(stream)):
        for second_cut in (cut, min(len(stream), cut + 7)):
            watch = UsageWatch(stream=True, strip_usage_chunk=True)
            pieces = [stream[:cut], stream[cut:second_cut], stream[second_cut:]]
            relayed = b"".join(watch.chunk(piece) for piece in pieces) + watch.end()
            assert relayed == expected, (cut, second_cut)
            report = watch.report()
            assert (report.input_tokens, report.output_tokens) == (11, 2)


async def test_usage_is_counted_when_the_client_leaves_mid_stream():
    seen = Seen()

    async def endless():
        for _ in range(1000):
            await asyncio.sleep(0)  # as a network read would, let the disconnect arrive
            yield event(delta("word"))

    async def respond(_url):
        return UpstreamResponse(200, SSE, endless())

    app, _ = gateway(respond, seen)
    exchange = Exchange()
    exchange.disconnect.set()  # the client is gone as soon as the answer starts
    await drive(
        app,
        "POST",
        CHAT,
        body={"model": "chat", "messages": MESSAGES, "stream": True},
        exchange=exchange,
    )
    assert seen.call is not None
    assert seen.call.usage is not None
    assert not seen.call.usage.exact
    assert 1 <= seen.call.usage.output_tokens < 1000


class Shout:
    """A response hook that upper-cases the body and holds the last byte back until the end."""

    rewrites = True

    def __init__(self) -> None:
        self.started: tuple[int, list] | None = None
        self.held = b""

    def start(self, status, headers):
        self.started = (status, list(headers))

    def chunk(self, data: bytes) -> bytes:
        data = self.held + data
        self.held = data[-1:]
        return data[:-1].upper()

    def end(self) -> bytes:
        held, self.held = self.held, b""
        return held.upper()


async def test_response_hooks_rewrite_the_body_and_drop_its_length():
    hook = Shout()

    async def add_hook(call: Call, call_next) -> None:
        call.response_hooks.append(hook)
        await call_next(call)

    routes = RouteSource(
        RouteTable.from_endpoints([endpoint("chat", {"v1": 100}, [replica("v1", A)])])
    )

    async def respond(_url):
        return json_response({"answer": "quiet"})

    app = create_gateway(
        routes,
        authenticate=accept_test_token,
        transport=ScriptedTransport(respond),
        stages=[add_hook],
    )
    exchange = await drive(app, "POST", CHAT, body={"model": "chat", "messages": MESSAGES})
    assert exchange.body == b'{"ANSWER":"QUIET"}'
    assert "content-length" not in exchange.headers
    assert hook.started is not None
    assert hook.started[0] == 200


async def test_embeddings_are_forwarded_and_metered():
    seen = Seen()

    async def respond(url):
        assert url.endswith("/v1/embeddings")
        return json_response(
            {"object": "list", "data": [], "usage": {"prompt_tokens": 5, "total_tokens": 5}}
        )

    app, transport = gateway(respond, seen)
    exchange = await drive(
        app, "POST", "/v1/embeddings", body={"model": "chat", "input": "hello there"}
    )
    assert exchange.status == 200
    assert transport.calls[0][1] == f"{A}/v1/embeddings"
    assert seen.call is not None
    assert seen.call.operation == "embeddings"
    assert seen.call.usage is not None
    assert (seen.call.usage.input_tokens, seen.call.usage.output_tokens) == (5, 0)


def ask_usage_watch(prompt_tokens: int = 7) -> UsageWatch:
    return UsageWatch(stream=True, strip_usage_chunk=False, prompt_tokens=lambda: prompt_tokens)


def data_events(relayed: bytes, end: bytes) -> list[dict | str]:
    events: list[dict | str] = []
    for raw in relayed.split(end):
        if raw.startswith(b"data:"):
            payload = raw[5:].strip()
            events.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return events


@pytest.mark.parametrize("end", [b"\n\n", b"\r\n\r\n"], ids=["lf", "crlf"])
def test_a_usage_chunk_is_supplied_before_done_wherever_the_stream_is_split(end):
    # llama-cpp-python's server ignores stream_options: no usage chunk comes.
    events = [event(delta("Hello"), end), event(delta(" there, [DONE] friend"), end)]
    stream = b"".join(events) + b"data: [DONE]" + end
    for cut in range(1, len(stream)):
        for second_cut in (cut, min(len(stream), cut + 5)):
            watch = ask_usage_watch()
            pieces = [stream[:cut], stream[cut:second_cut], stream[second_cut:]]
            relayed = b"".join(watch.chunk(piece) for piece in pieces) + watch.end()
            assert relayed.startswith(events[0] + events[1]), (cut, second_cut)
            *_, supplied, done = data_events(relayed, end)
            assert done == "[DONE]"
            assert supplied == {
                "id": "c",
                "model": "v1",
                "choices": [],
                "usage": {
                    "prompt_tokens": 7,
                    "completion_tokens": 7,  # 26 characters / 4, more than the 2 chunks
                    "total_tokens": 14,
                    "estimated": True,
                },
            }
            report = watch.report()
            assert (report.input_tokens, report.output_tokens, report.exact) == (None, 7, False)


def test_no_usage_chunk_is_supplied_when_the_upstream_sent_one_or_the_stream_broke():
    stream = event(delta("Hi")) + event(USAGE_EVENT) + b"data: [DONE]\n\n"
    watch = ask_usage_watch()
    assert (
        b"".join(watch.chunk(stream[i : i + 9]) for i in range(0, len(stream), 9)) + (watch.end())
        == stream
    )
    cut_off = event(delta("Hi")) + b"data: [DO"
    watch = ask_usage_watch()
    assert watch.chunk(cut_off) + watch.end() == cut_off  # no [DONE]: nothing to put before
    # Without a prompt estimate (a gateway built without one), the stream is left as it came.
    plain = UsageWatch(stream=True, strip_usage_chunk=False)
    no_usage = event(delta("Hi")) + b"data: [DONE]\n\n"
    assert plain.chunk(no_usage) + plain.end() == no_usage


async def test_a_client_that_asked_gets_a_usage_chunk_from_an_upstream_that_sends_none():
    seen = Seen()
    chunks = [event(delta("Hi")), event(delta(" you")), b"data: [DONE]\n\n"]
    routes = RouteSource(
        RouteTable.from_endpoints([endpoint("chat", {"v1": 100}, [replica("v1", A)])])
    )
    app = create_gateway(
        routes,
        authenticate=accept_test_token,
        transport=ScriptedTransport(sse_stream(*chunks)),
        stages=[seen],
        estimate_prompt_tokens=lambda body: 3 * len(body["messages"]),
    )
    body = ASKS_FOR_USAGE
    exchange = await drive(app, "POST", CHAT, body=body)
    *content, supplied, done = data_events(exchange.body, b"\n\n")
    assert [c["choices"][0]["delta"]["content"] for c in content] == ["Hi", " you"]
    assert done == "[DONE]"
    assert supplied["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
        "estimated": True,
    }
    assert seen.call is not None
    assert seen.call.usage is not None
    assert not seen.call.usage.exact  # metering keeps its own (unchanged) numbers
    # A client that did not ask gets no usage chunk either way.
    exchange = await drive(app, "POST", CHAT, body={**body, "stream_options": None})
    assert b'"usage"' not in exchange.body


def test_counted_output_never_exceeds_what_the_request_allows():
    long_words = b"".join(event(delta("abcdefghijklmnop")) for _ in range(3))  # 12 by characters
    stream = long_words + b"data: [DONE]\n\n"
    watch = UsageWatch(
        stream=True,
        strip_usage_chunk=False,
        prompt_tokens=lambda: 4,
        output_cap=output_cap({"max_tokens": 5, "n": 2}),
    )
    relayed = watch.chunk(stream) + watch.end()
    *_, supplied, _done = data_events(relayed, b"\n\n")
    assert supplied["usage"]["completion_tokens"] == 10
    assert watch.report().output_tokens == 10
    uncapped = UsageWatch(stream=True, strip_usage_chunk=True)
    uncapped.chunk(stream)
    assert uncapped.report().output_tokens == 12
    assert output_cap({"max_completion_tokens": 3, "max_tokens": 9}) == 3
    assert output_cap({"max_tokens": 0}) is None
    assert output_cap({"max_tokens": True}) is None
