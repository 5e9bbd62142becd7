"""Telemetry benchmark: µs per request that the gateway's telemetry adds, and its parts.

    python benchmarks/telemetry_bench.py [--quick]

One "request" is the lifecycle the gateway runs: ``CallInfo.from_request`` over a chat body,
``start``, ``first_chunk``, ``usage``, ``response``, ``cost``, ``finish``. Rows, side by side:

- no telemetry: the same loop building the request body only (the floor);
- trace store only: export off, no Prometheus registry;
- + Prometheus: the bounded metrics on a registry;
- + trace database: finished traces also written to SQLite (one transaction per drained batch);
- + OTel export: spans (batch span processor into the SDK's in-memory exporter, drained by
  the processor's thread) and GenAI histograms (in-memory reader);
- + content capture: the same with prompts and responses recorded (bounded).

"request path" is what ``finish`` and friends cost the request. Span and GenAI metric building
happen later on the recorder thread; to separate the two, the recorder rows hold its
thread back during the timed loop and then drain its queue, timed as "recorded later". Both
run under the same GIL, so their sum is the CPU the process spends per request. The export rows
also count the spans that reached the exporter after a flush (the pipeline drops rather than
block when a queue is full).
``StreamUsage`` is measured per SSE chunk.

The last table is the server's gateway stage (``corral.server.telemetry_extension``) as ``corral
serve`` runs it: around an inner pipeline that answers at once (policy decided, usage and cost
set, and for streamed requests 20 chunks run through the response hooks), against a pass-through
stage around the same pipeline. "added" is what the stage costs a request, on the request path,
and "% of bare" puts that against the per-request time of the bare raw-ASGI pass-through in
benchmarks/README.md (64.6 µs on one core, 15,491 req/s): the share of the issue's ≥ 40%
throughput budget that telemetry spends. Medians over repeats on a shared 2-core machine: read
the differences between rows, not the absolute numbers. Times are the measuring thread's
CPU time (``time.thread_time``), so other processes on the machine do not inflate them.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

from corral.gateway import Call, Handler
from corral.gateway.routes import RouteTable, compile_endpoint
from corral.identity import Principal
from corral.observability import CallInfo, StreamUsage, Telemetry, TelemetryConfig, UsageReport
from corral.observability._recorder import Recorder
from corral.server.config import ServerConfig
from corral.server.extensions import ServerContext
from corral.server.telemetry_extension import TelemetryExtension

CLOCK = time.thread_time
"""CPU time of the measuring thread: on a shared, busy machine wall time mostly measures the
neighbours; CPU time measures the code (the recorder thread's work is not counted in it)."""
BARE_PASS_THROUGH_US = 1e6 / 15_491
"""Per request, the bare raw-ASGI pass-through of benchmarks/README.md on one core."""
STREAM_CHUNKS = 20

PAYLOAD: dict[str, Any] = {
    "model": "chat",
    "messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Summarise the corral design in one sentence. " * 4},
    ],
    "max_tokens": 128,
    "temperature": 0.2,
    "stream": True,
}
CHUNK = (
    b'data: {"id":"chatcmpl-AZ1","object":"chat.completion.chunk","created":1732400000,'
    b'"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,'
    b'"delta":{"content":" token"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n'
)


def per_call_us(call: Callable[[], object], calls: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean µs per call across ``calls`` calls."""
    samples = []
    for _ in range(repeats):
        started = CLOCK()
        for _ in range(calls):
            call()
        samples.append((CLOCK() - started) / calls * 1e6)
    return statistics.median(samples)


def baseline() -> object:
    return dict(PAYLOAD)


def lifecycle(telemetry: Telemetry) -> Callable[[], object]:
    def request() -> object:
        info = CallInfo.from_request(
            "chat",
            dict(PAYLOAD),
            endpoint="chat",
            team="search",
            provider="openai",
            server_address="upstream.local",
        )
        call = telemetry.start(info)
        call.first_chunk()
        call.output_text("The corral design is a control plane.")
        call.usage(42, 17)
        call.response("gpt-4o-mini-2024-07-18", ("stop",))
        call.cost(0.00012)
        return call.finish(200)

    return request


def request_and_recording_us(
    telemetry: Telemetry,
    calls: int,
    repeats: int,
    request: Callable[[], object] | None = None,
) -> tuple[float, float]:
    """Medians of µs per request on the request path and of the deferred recording per request."""
    request = request or lifecycle(telemetry)
    if telemetry.recorder is not None:
        # Held back (no wake-ups) and deep enough for one repeat: drained by hand below.
        telemetry.recorder.close()
        telemetry.recorder = Recorder(
            telemetry.otel,
            telemetry.model_label,
            telemetry.persisted,
            max_queue=calls,
            wake_every=calls + 1,
            interval_s=3600,
        )
    on_path, later = [], []
    for _ in range(repeats):
        telemetry.force_flush()
        started = CLOCK()
        for _ in range(calls):
            request()
        drained = CLOCK()
        if telemetry.recorder is not None:
            telemetry.recorder.drain()
        finished = CLOCK()
        on_path.append((drained - started) / calls * 1e6)
        later.append((finished - drained) / calls * 1e6)
    return statistics.median(on_path), statistics.median(later)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, for CI smoke runs")
    args = parser.parse_args()
    # One repeat fits the span queue (8192), so a drained repeat is never dropped.
    calls, repeats = (2_000, 3) if args.quick else (5_000, 9)

    table = Table(title=f"telemetry per request ({calls} calls x {repeats} repeats, median)")
    columns = ("setup", "µs request path", "added vs none", "µs recorded later", "spans")
    for column in columns:
        table.add_column(column, justify="right" if column != "setup" else "left")

    floor = per_call_us(baseline, calls, repeats)
    table.add_row("no telemetry", f"{floor:.2f}", "-", "-", "-")

    database = Path(tempfile.mkdtemp(prefix="corral-telemetry-bench-")) / "traces.db"
    setups: list[tuple[str, TelemetryConfig, bool, bool]] = [
        ("trace store only", TelemetryConfig(), False, False),
        ("+ Prometheus", TelemetryConfig(), True, False),
        ("+ trace database", TelemetryConfig(trace_db_path=database), True, False),
        ("+ OTel export (in-memory)", TelemetryConfig(), True, True),
        ("+ content capture", TelemetryConfig(capture_content=True), True, True),
    ]
    for label, config, prometheus, export in setups:
        spans = InMemorySpanExporter() if export else None
        reader = InMemoryMetricReader() if export else None
        registry = CollectorRegistry() if prometheus else None
        with Telemetry(
            config, registry=registry, span_exporter=spans, metric_reader=reader
        ) as telemetry:
            us, later = request_and_recording_us(telemetry, calls, repeats)
            telemetry.force_flush()
            exported = "-"
            if spans is not None:
                exported = f"{len(spans.get_finished_spans())}/{calls * repeats}"
        table.add_row(label, f"{us:.2f}", f"{us - floor:+.2f}", f"{later:.2f}", exported)

    shutil.rmtree(database.parent)
    console = Console()
    console.print(table)

    stream = Table(title="streaming usage (StreamUsage.feed)")
    stream.add_column("input")
    stream.add_column("µs", justify="right")
    usage = StreamUsage()
    per_chunk = per_call_us(lambda: usage.feed(CHUNK), calls * 5, repeats)
    stream.add_row("one SSE chunk (~270 bytes)", f"{per_chunk:.2f}")
    whole = CHUNK * 200

    def whole_stream() -> object:
        counter = StreamUsage()
        counter.feed(whole)
        return counter.report()

    stream.add_row("200-chunk stream, one feed", f"{per_call_us(whole_stream, 50, repeats):.1f}")
    stream.add_row(
        "orjson.loads of one chunk (floor)",
        f"{per_call_us(lambda: orjson.loads(CHUNK[6:]), calls * 5, repeats):.2f}",
    )
    console.print(stream)

    console.print(stage_table(calls, repeats))


def stage_table(calls: int, repeats: int) -> Table:
    table = Table(title=f"gateway stage per request ({calls} calls x {repeats} repeats, median)")
    for column in ("request", "setup", "µs pass-through", "µs with stage", "added", "% of bare"):
        table.add_column(column, justify="left" if column in ("request", "setup") else "right")
    state = Path(tempfile.mkdtemp(prefix="corral-telemetry-stage-"))
    setups: list[tuple[str, TelemetryConfig, bool]] = [
        ("corral serve default (store, Prometheus, traces.db)", _served(state), False),
        ("+ OTLP export (in-memory)", _served(state), True),
    ]
    for stream in (False, True):
        for label, config, export in setups:
            extension = TelemetryExtension(
                ServerContext(
                    config=ServerConfig(port=0, state_dir=state),
                    state_dir=state,
                    store=None,  # type: ignore[arg-type]  # never touched by the stage
                    store_url=f"sqlite:///{state / 'corral.db'}",
                    stop=asyncio.Event(),
                )
            )
            with Telemetry(
                config,
                registry=extension.context.metrics,
                span_exporter=InMemorySpanExporter() if export else None,
                metric_reader=InMemoryMetricReader() if export else None,
                governance_metrics=False,
            ) as telemetry:
                extension.telemetry = telemetry
                bare = per_call_us(_requests(_pass_through, stream), calls, repeats)
                staged, _later = request_and_recording_us(
                    telemetry, calls, repeats, _requests(extension.stage, stream)
                )
            added = staged - bare
            table.add_row(
                "streamed" if stream else "plain",
                label,
                f"{bare:.2f}",
                f"{staged:.2f}",
                f"{added:+.2f}",
                f"{added / BARE_PASS_THROUGH_US:.1%}",
            )
    shutil.rmtree(state)
    return table


def _served(state: Path) -> TelemetryConfig:
    return TelemetryConfig(trace_db_path=state / "traces.db")


_ROUTE = compile_endpoint(
    {
        "metadata": {"name": "chat"},
        "spec": {
            "models": [{"model": "gpt-4o-mini", "weight": 100}],
            "runtime": {"type": "openai"},
        },
        "status": {
            "replicas": [
                {"name": "r", "model": "gpt-4o-mini", "apiBase": "http://up:8000/v1", "ready": True}
            ]
        },
    }
)
_PRINCIPAL = Principal("team-key", "default/search-key", team="search", namespace="default")
_USAGE = UsageReport(42, 17, True, ("stop",), "gpt-4o-mini-2024-07-18")
_ROUTES = RouteTable()


async def _pass_through(call: Call, call_next: Handler) -> None:
    await call_next(call)


async def _answer(call: Call) -> None:
    """The inner stages and the relay, answering at once (no await that suspends)."""
    call.decided_by = ("default/search-may-chat",)
    hooks = call.response_hooks
    for hook in hooks:
        hook.start(200, [])
    call.upstream_status = 200
    call.served_by = "http://up:8000/v1"
    if call.stream:
        for _ in range(STREAM_CHUNKS):
            chunk = CHUNK
            for hook in hooks:
                chunk = hook.chunk(chunk)
    for hook in hooks:
        hook.end()
    call.usage = _USAGE
    call.cost_usd = 0.00012


def _requests(stage: Callable[[Call, Handler], Any], stream: bool) -> Callable[[], object]:
    payload = {**PAYLOAD, "stream": stream}
    body = orjson.dumps(payload)

    def request() -> object:
        call = Call(
            {"type": "http", "headers": []}, _nothing, _nothing, "/v1/chat/completions", _ROUTES
        )
        call.principal = _PRINCIPAL
        call.payload = payload
        call.body = body
        call.stream = stream
        call.endpoint = _ROUTE
        # Driven by hand: nothing inside suspends, so no event loop time is measured.
        coroutine = stage(call, _answer)
        try:
            coroutine.send(None)
        except StopIteration:
            return call
        raise RuntimeError("the stage suspended")

    return request


async def _nothing(*_args: Any) -> Any:
    raise AssertionError("the benchmark's stage must not touch the connection")


if __name__ == "__main__":
    main()
