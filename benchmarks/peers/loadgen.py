"""Load for the peer benchmark: ``wrk`` for saturation, an open-loop generator for latency.

``wrk`` is closed-loop (each connection waits for its answer before sending again), which is
right for "how many requests per second at most" and wrong for latency: a slow answer delays
the requests behind it, and they are never counted as late ("coordinated omission"). wrk2 (the
fixed-rate fork) is not packaged for Debian, so :func:`open_loop` does the fixed-rate part: it
sends request *i* at ``start + i / rate`` whatever happened to the ones before, on as many
keep-alive connections as it needs, and measures every latency from the *scheduled* send time,
so time a request spent waiting for a free connection (or for the generator itself) counts.
It is asyncio on uvloop with httptools parsing, run pinned to the load core.

For streamed requests it records the time to the first body bytes (the first SSE chunk) as well
as to the end of the response.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httptools

from peers.processes import taskset, tool_path

WRK_SCRIPT = Path(__file__).with_name("post.lua")
# Event-loop timers fire up to ~1 ms late; sleep that much less and spin (yielding) the rest,
# so the generator's own lateness stays well under the latencies it measures.
_TIMER_SLACK_S = 0.0015


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


VARY_MARK = "@@@@@@"
"""Where a body holds this, each request puts a tag of its own in its place (see ``tag``): no
two requests carry the same prompt, as with real users, so no gateway cache answers for a
prompt it has seen. The same width, so Content-Length holds."""


def tag(number: int) -> str:
    """``number`` as six lowercase letters (base 26): words no guardrail detector flags."""
    letters = []
    for _ in range(len(VARY_MARK)):
        number, digit = divmod(number, 26)
        letters.append(chr(97 + digit))
    return "".join(reversed(letters))


def http_request(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The raw bytes of ``POST url`` with ``body`` (keep-alive, HTTP/1.1)."""
    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1", f"host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --- open loop -------------------------------------------------------------------------------


@dataclass
class OpenLoopResult:
    rate: float
    latencies: list[float] = field(default_factory=list)
    """Scheduled send -> last byte of the response, seconds, for 2xx answers."""
    first_chunks: list[float] = field(default_factory=list)
    """Scheduled send -> first body bytes, seconds, for 2xx answers."""
    answered: int = 0
    """Every answer, warm-up and errors included."""
    errors: int = 0
    """Non-2xx answers and broken connections."""
    error_samples: list[str] = field(default_factory=list)
    unfinished: int = 0
    """Requests still unanswered when the run's grace period ended."""
    connections: int = 0
    lag_p99: float = 0.0
    """How late the generator itself sent (99th percentile, seconds): its own noise floor."""

    def p(self, fraction: float, first_chunk: bool = False) -> float:
        return percentile(self.first_chunks if first_chunk else self.latencies, fraction)


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, generator: OpenLoop) -> None:
        self.generator = generator
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self.scheduled = 0.0
        self.record = False
        self.first = 0.0
        self.status = 0
        self.body_head = b""
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def send(self, request: bytes, scheduled: float, record: bool) -> None:
        self.busy = True
        self.scheduled, self.record, self.first, self.body_head = scheduled, record, 0.0, b""
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._failed(f"bad response: {error}")
            self.transport.close()

    def on_status(self, _status: bytes) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if not self.first:
            self.first = time.perf_counter()
        if len(self.body_head) < 300:
            self.body_head += body[:300]

    def on_message_complete(self) -> None:
        now = time.perf_counter()
        self.busy = False
        result = self.generator.result
        result.answered += 1
        if 200 <= self.status < 300:
            if self.record:
                result.latencies.append(now - self.scheduled)
                result.first_chunks.append((self.first or now) - self.scheduled)
        else:
            self._count_error(f"{self.status}: {self.body_head[:200]!r}")
        self.generator.released(self)

    def _count_error(self, what: str) -> None:
        result = self.generator.result
        result.errors += 1
        if len(result.error_samples) < 5:
            result.error_samples.append(what)

    def _failed(self, what: str) -> None:
        if self.busy:
            self.busy = False
            self._count_error(what)
            self.generator.finished_one()

    def connection_lost(self, exc: Exception | None) -> None:
        self._failed(f"connection lost: {exc}")
        self.generator.lost(self)


class OpenLoop:
    """Sends one fixed request at a fixed rate; ``result`` fills in as answers arrive."""

    def __init__(
        self, host: str, port: int, request: bytes, rate: float, max_connections: int
    ) -> None:
        self.host, self.port, self.request, self.rate = host, port, request, rate
        self.varies = VARY_MARK.encode() in request
        self.sent = 0
        self.result = OpenLoopResult(rate)
        self.idle: list[_Connection] = []
        self.all: set[_Connection] = set()
        self.outstanding = 0
        self.connecting = 0
        self.max_connections = max_connections
        self.backlog: deque[tuple[float, bool]] = deque()
        self.drained: asyncio.Event = asyncio.Event()

    @classmethod
    def for_url(
        cls,
        url: str,
        body: bytes,
        headers: dict[str, str],
        rate: float,
        max_connections: int = 256,
    ) -> OpenLoop:
        parts = urlsplit(url)
        if not parts.hostname or not parts.port:
            raise ValueError(f"{url}: needs a host and a port")
        request = http_request(url, body, headers)
        return cls(parts.hostname, parts.port, request, rate, max_connections)

    async def connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: _Connection(self), self.host, self.port
        )
        self.all.add(connection)
        self.result.connections = max(self.result.connections, len(self.all))
        return connection

    def released(self, connection: _Connection) -> None:
        if self.backlog:
            scheduled, record = self.backlog.popleft()
            connection.send(self.next_request(), scheduled, record)
        else:
            self.idle.append(connection)
        self.finished_one()

    def finished_one(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self.drained.set()

    def lost(self, connection: _Connection) -> None:
        self.all.discard(connection)
        if connection in self.idle:
            self.idle.remove(connection)

    def dispatch(self, scheduled: float, record: bool) -> asyncio.Task[None] | None:
        """Send now on an idle connection, or open one, or (at the cap) queue until one frees."""
        self.outstanding += 1
        self.drained.clear()
        if self.idle:
            self.idle.pop().send(self.next_request(), scheduled, record)
            return None
        if len(self.all) + self.connecting >= self.max_connections:
            self.backlog.append((scheduled, record))
            return None
        return asyncio.ensure_future(self._connect_and_send(scheduled, record))

    async def _connect_and_send(self, scheduled: float, record: bool) -> None:
        self.connecting += 1
        try:
            connection = await self.connect()
        except OSError as error:
            self.result.errors += 1
            if len(self.result.error_samples) < 5:
                self.result.error_samples.append(f"connect: {error}")
            self.finished_one()
            return
        finally:
            self.connecting -= 1
        connection.send(self.next_request(), scheduled, record)

    def next_request(self) -> bytes:
        if not self.varies:
            return self.request
        self.sent += 1
        return self.request.replace(VARY_MARK.encode(), tag(self.sent).encode(), 1)

    async def run(self, seconds: float, warmup: float, prewarm: int) -> OpenLoopResult:
        for _ in range(prewarm):
            self.idle.append(await self.connect())
        interval = 1.0 / self.rate
        total = int((warmup + seconds) * self.rate)
        recorded_from = int(warmup * self.rate)
        lags: list[float] = []
        pending: set[asyncio.Task[None]] = set()
        start = time.perf_counter() + 0.05
        for index in range(total):
            scheduled = start + index * interval
            delay = scheduled - time.perf_counter()
            if delay > _TIMER_SLACK_S:
                await asyncio.sleep(delay - _TIMER_SLACK_S)
            # The loop's timers tick in whole ms: spin the rest, yielding so responses get in.
            while time.perf_counter() < scheduled:  # noqa: ASYNC110
                await asyncio.sleep(0)
            lags.append(time.perf_counter() - scheduled)
            task = self.dispatch(scheduled, index >= recorded_from)
            if task is not None:
                pending.add(task)
                task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
        if self.outstanding:
            try:
                await asyncio.wait_for(self.drained.wait(), timeout=10)
            except TimeoutError:
                self.result.unfinished = self.outstanding
        for connection in list(self.all):
            connection.transport.close()
        self.result.lag_p99 = percentile(lags, 0.99)
        return self.result


async def open_loop(
    url: str,
    body: bytes,
    headers: dict[str, str],
    rate: float,
    seconds: float,
    warmup: float = 1.0,
    prewarm: int = 8,
    max_connections: int = 256,
) -> OpenLoopResult:
    """POST ``body`` to ``url`` at a fixed ``rate`` for ``warmup + seconds``; record the last part.

    Latencies are measured from each request's scheduled send time (no coordinated omission).
    At most ``max_connections`` are open; beyond that, requests wait for a free one (and the
    wait counts).
    """
    generator = OpenLoop.for_url(url, body, headers, rate, max_connections)
    return await generator.run(seconds, warmup, prewarm)


# --- wrk ---------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests_per_second: float
    requests: int
    errors: int
    """Non-2xx/3xx answers plus socket errors (connect, read, write, timeout)."""
    output: str


_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_TOTAL = re.compile(r"(\d+) requests in")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(output: str) -> WrkResult:
    rate, total = _RATE.search(output), _TOTAL.search(output)
    if rate is None or total is None:
        raise SystemExit(f"wrk printed no rate:\n{output}")
    non_2xx = _NON_2XX.search(output)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    socket_errors = _SOCKET.search(output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkResult(float(rate.group(1)), int(total.group(1)), errors, output)


def wrk(
    url: str,
    body: bytes,
    headers: dict[str, str],
    connections: int,
    seconds: float,
    cpu: int | None,
    timeout_s: int = 10,
) -> WrkResult:
    """Closed-loop saturation: ``connections`` keep-alive connections, one thread, ``seconds``."""
    command = [tool_path("wrk"), "-t1", f"-c{connections}", f"-d{seconds:g}s"]
    command += [f"--timeout={timeout_s}s", "-s", str(WRK_SCRIPT)]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    env = {**os.environ, "BENCH_BODY": body.decode()}
    result = subprocess.run(
        taskset(command, cpu), capture_output=True, text=True, env=env, timeout=seconds + 60
    )
    if result.returncode != 0:
        raise SystemExit(f"wrk failed ({result.returncode}): {result.stderr}{result.stdout}")
    return parse_wrk(result.stdout)


def wrk_version() -> str:
    result = subprocess.run([tool_path("wrk"), "-v"], capture_output=True, text=True)
    return (result.stdout + result.stderr).split("Copyright")[0].strip()
