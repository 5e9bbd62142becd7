"""The peer benchmark's helpers measure what they claim (benchmarks/peers/).

The open-loop generator is run against a real local HTTP server: when the server stalls, the
requests scheduled during the stall must show the stall in their latency (measured from their
scheduled send time, not from when a connection freed up), and refusals must be counted as
errors. The nginx config strings, wrk's output parsing and the governance summary are checked
on known inputs.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import httptools
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from peers.fake_upstream import CHAT_BODY, STREAM_BODY, nginx_config, nginx_string
from peers.governed_corral import Probe, chat_body, governance_gaps, stream_body
from peers.loadgen import open_loop, parse_wrk, percentile

STALL_S = 0.2


class _StallingServer(asyncio.Protocol):
    """Answers 200 at once, except: the first request waits STALL_S; paths /refuse get 503."""

    requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_complete(self) -> None:
        _StallingServer.requests += 1
        status = b"503 Service Unavailable" if self.url == b"/refuse" else b"200 OK"
        answer = b"HTTP/1.1 %s\r\ncontent-length: 2\r\n\r\nok" % status
        if _StallingServer.requests == 1:
            asyncio.get_running_loop().call_later(STALL_S, self.transport.write, answer)
        else:
            self.transport.write(answer)


async def _serve() -> tuple[asyncio.Server, str]:
    _StallingServer.requests = 0
    server = await asyncio.get_running_loop().create_server(_StallingServer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def test_a_stall_shows_in_the_latency_of_requests_scheduled_behind_it() -> None:
    server, url = await _serve()
    try:
        result = await open_loop(
            url + "/chat", b"{}", {}, rate=100, seconds=1.0, warmup=0.0, prewarm=1,
            max_connections=1,
        )  # fmt: skip
    finally:
        server.close()
    assert result.errors == 0
    assert result.answered == 100
    assert len(result.latencies) == 100
    # On one connection, the ~19 requests scheduled during the stall queue behind it; measured
    # from when each was due, the early ones waited most of the stall.
    assert max(result.latencies) >= STALL_S * 0.9
    assert sum(1 for latency in result.latencies if latency >= 0.1) >= 8
    assert percentile(result.latencies, 0.5) < 0.05


async def test_the_generator_opens_connections_instead_of_waiting_when_allowed() -> None:
    server, url = await _serve()
    try:
        result = await open_loop(
            url + "/chat", b"{}", {}, rate=100, seconds=1.0, warmup=0.0, prewarm=1
        )
    finally:
        server.close()
    # Only the stalled request itself is slow: the rest went out on new connections on time.
    assert sum(1 for latency in result.latencies if latency >= 0.1) == 1
    assert result.connections >= 2


async def test_non_2xx_answers_are_errors_not_latencies() -> None:
    server, url = await _serve()
    try:
        result = await open_loop(url + "/refuse", b"{}", {}, rate=50, seconds=0.5, warmup=0.0)
    finally:
        server.close()
    assert result.errors == 25
    assert result.latencies == []
    assert result.error_samples[0].startswith("503")


def test_wrk_output_is_parsed_with_errors_counted() -> None:
    output = """Running 10s test @ http://127.0.0.1:1234/v1/chat/completions
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.10ms    1.00ms  20.00ms   90.00%
  48210 requests in 10.01s, 30.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   4816.18
Transfer/sec:      3.00MB
"""
    result = parse_wrk(output)
    assert result.requests_per_second == 4816.18
    assert result.requests == 48210
    assert result.errors == 12


def test_nginx_strings_keep_quotes_backslashes_and_newlines() -> None:
    assert nginx_string("a'b\\c\nd") == "'a\\'b\\\\c\\nd'"
    config = nginx_config(8080, Path("/tmp/x"))
    assert "listen 127.0.0.1:8080" in config
    assert "location = /stream/v1/chat/completions" in config
    assert orjson.loads(CHAT_BODY)["usage"]["total_tokens"] == 18
    events = [line for line in STREAM_BODY.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert orjson.loads(events[-2].removeprefix("data: "))["usage"]["total_tokens"] == 14


def test_request_bodies_ask_for_a_stream_only_when_streamed() -> None:
    plain, streamed = orjson.loads(chat_body()), orjson.loads(stream_body())
    assert "stream" not in plain
    assert plain["max_tokens"] == 16
    assert streamed["stream"] is True
    assert streamed["stream_options"] == {"include_usage": True}


def test_governance_gaps_name_unapplied_pieces_and_failed_probes_once() -> None:
    probes = [
        Probe("auth (no key -> 401)", True, "401"),
        Probe("rate limit (2nd request at 1 RPM -> 429)", False, "200, then 200"),
        Probe("budget (1-token hard budget -> 429)", False, "200 {...}"),
    ]
    gaps = governance_gaps({"rate limit": "RateLimit refused: unknown kind"}, probes)
    assert gaps == {
        "rate limit": "RateLimit refused: unknown kind",
        "budget": "probe failed: 200 {...}",
    }
