"""The telemetry stage on its own: what it records of a call, timed on a fake clock, with the
SDK's in-memory span exporter and a Prometheus registry at the ``Telemetry`` seam. The inner
stages are doubles that run the response hooks the way the forwarding stage does.

Also the extension's life: ``start`` builds the hub from the environment with its trace
database in the state dir, and ``aclose`` flushes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from corral.gateway import Call, GatewayError
from corral.gateway.routes import RouteTable, compile_endpoint
from corral.identity import Principal
from corral.observability import Telemetry, TelemetryConfig, TraceRecord, UsageReport
from corral.observability import request as request_module
from corral.server.config import ServerConfig
from corral.server.extensions import ServerContext
from corral.server.telemetry_extension import TRACES_FILE, TelemetryExtension

SEARCH_KEY = Principal("team-key", "default/search-key", team="search", namespace="default")
PROMPT = "a prompt that must not be kept"
CHUNKS = (
    b'data: {"choices":[{"index":0,"delta":{"content":"Hello"}}]}\n\n',
    b'data: {"choices":[{"index":0,"delta":{"content":" there"},"finish_reason":"stop"}]}\n\n',
    b"data: [DONE]\n\n",
)
ANSWER = orjson.dumps(
    {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}}]}
)
ROUTE = compile_endpoint(
    {
        "metadata": {"name": "chat", "namespace": "default"},
        "spec": {"models": [{"model": "qwen", "weight": 100}], "runtime": {"type": "vllm"}},
        "status": {
            "replicas": [
                {"name": "r0", "model": "qwen", "apiBase": "http://10.0.0.7:8000/v1", "ready": True}
            ]
        },
    }
)


class FakeClock:
    """Stands in for the ``time`` module of ``corral.observability.request``."""

    def __init__(self) -> None:
        self.ns = 1_700_000_000 * 10**9

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * 1e9)

    def perf_counter_ns(self) -> int:
        return self.ns

    def time_ns(self) -> int:
        return self.ns


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(request_module, "time", fake)
    return fake


def context(tmp_path: Path) -> ServerContext:
    return ServerContext(
        config=ServerConfig(port=0, state_dir=tmp_path),
        state_dir=tmp_path,
        store=None,  # type: ignore[arg-type]  # the telemetry extension never touches the store
        store_url=f"sqlite:///{tmp_path / 'corral.db'}",
        stop=asyncio.Event(),
    )


class Seam:
    def __init__(self, tmp_path: Path, config: TelemetryConfig) -> None:
        self.spans = InMemorySpanExporter()
        self.registry = CollectorRegistry()
        self.extension = TelemetryExtension(context(tmp_path))
        self.extension.telemetry = Telemetry(
            config,
            registry=self.registry,
            span_exporter=self.spans,
            metric_reader=InMemoryMetricReader(),
            governance_metrics=False,
        )

    @property
    def telemetry(self) -> Telemetry:
        assert self.extension.telemetry is not None
        return self.extension.telemetry

    def run(self, call: Call, inner: Callable[[Call], Awaitable[None]]) -> None:
        asyncio.run(self.extension.stage(call, inner))

    def only_record(self) -> TraceRecord:
        (record,) = self.telemetry.store.query()
        return record

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def seam(tmp_path: Path) -> Iterator[Seam]:
    made = Seam(tmp_path, TelemetryConfig())
    yield made
    made.telemetry.shutdown()


def make_call(payload: dict[str, Any], principal: Principal | None = SEARCH_KEY) -> Call:
    call = Call(
        {"type": "http", "headers": []}, _never, _never, "/v1/chat/completions", RouteTable()
    )
    call.principal = principal
    call.payload = payload
    call.body = orjson.dumps(payload)
    call.stream = payload.get("stream") is True
    call.endpoint = ROUTE
    return call


async def _never(*_args: Any) -> Any:
    raise AssertionError("the stage under test must not touch the connection")


def relaying(
    clock: FakeClock, chunks: tuple[bytes, ...], usage: UsageReport, *, gap_s: float = 0.03
) -> Callable[[Call], Awaitable[None]]:
    """An inner pipeline: policy decided, the budget priced it, the upstream answered
    ``chunks`` one every ``gap_s`` seconds (run through the hooks as forwarding does)."""

    async def inner(call: Call) -> None:
        call.decided_by = ("default/search-may-chat",)
        hooks = call.response_hooks
        for hook in hooks:
            hook.start(200, [])
        call.upstream_status = 200
        call.served_by = "http://10.0.0.7:8000/v1"
        for hook in hooks:
            hook.chunk(b"")  # an empty read before any byte: not a first chunk
        for chunk in chunks:
            clock.advance(gap_s)
            for hook in hooks:
                chunk = hook.chunk(chunk)
        for hook in hooks:
            hook.end()
        clock.advance(gap_s)
        call.usage = usage
        call.cost_usd = 0.0025

    return inner


def test_a_streamed_call_is_recorded_with_its_first_chunk_usage_cost_and_policy(
    seam: Seam, clock: FakeClock
) -> None:
    payload = {
        "model": "chat",
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "max_tokens": 64,
        "temperature": 0.5,
    }
    usage = UsageReport(11, 2, True, ("stop",), "qwen")
    seam.run(make_call(payload), relaying(clock, CHUNKS, usage))

    record = seam.only_record()
    assert record.time_to_first_chunk_s == pytest.approx(0.03)
    assert record.duration_s == pytest.approx(4 * 0.03)
    assert (record.operation, record.endpoint, record.team, record.provider) == (
        "chat",
        "chat",
        "search",
        "vllm",
    )
    assert (record.request_model, record.response_model, record.stream) == ("chat", "qwen", True)
    assert (record.max_tokens, record.temperature) == (64, 0.5)
    assert (record.input_tokens, record.output_tokens, record.finish_reasons) == (11, 2, ("stop",))
    assert (record.cost_usd, record.policy, record.server_address) == (
        0.0025,
        "default/search-may-chat",
        "10.0.0.7",
    )
    assert (record.status, record.error) == (200, None)
    assert record.input_content is None
    assert record.output_content is None

    labels = {"endpoint": "chat", "team": "search"}
    assert seam.sample("corral_gateway_requests_total", status="200", **labels) == 1
    assert seam.sample("corral_gateway_tokens_total", type="input", **labels) == 11
    assert seam.sample("corral_gateway_tokens_total", type="output", **labels) == 2
    assert seam.sample("corral_gateway_cost_usd_total", **labels) == 0.0025
    assert seam.sample("corral_gateway_time_to_first_chunk_seconds_count", **labels) == 1
    # Budget and guardrail series are their own extensions' (same registry, no clash).
    assert seam.sample("corral_budget_remaining_usd", budget="b", team="search") is None

    seam.telemetry.force_flush()
    (span,) = seam.spans.get_finished_spans()
    assert span.name == "chat chat"
    assert span.attributes is not None
    assert span.attributes["gen_ai.usage.input_tokens"] == 11
    assert span.attributes["gen_ai.usage.output_tokens"] == 2
    assert span.attributes["gen_ai.provider.name"] == "vllm"
    assert span.attributes["server.address"] == "10.0.0.7"
    assert "gen_ai.input.messages" not in span.attributes
    assert f"{span.context.trace_id:032x}" == record.trace_id
    (event,) = span.events
    assert event.name == "gen_ai.first_chunk"
    assert span.start_time is not None
    assert event.timestamp - span.start_time == pytest.approx(0.03e9, abs=1e3)
    assert PROMPT not in repr(span.to_json())


def test_a_plain_call_gets_no_response_hook_and_no_first_chunk(
    seam: Seam, clock: FakeClock
) -> None:
    call = make_call({"model": "chat", "messages": [{"role": "user", "content": PROMPT}]})
    seen_hooks: list[int] = []

    async def inner(call: Call) -> None:
        seen_hooks.append(len(call.response_hooks))
        clock.advance(0.2)
        call.upstream_status = 200
        call.usage = UsageReport(5, 3, True)

    seam.run(call, inner)
    assert seen_hooks == [0]  # nothing runs per chunk when there is nothing to time
    record = seam.only_record()
    assert record.time_to_first_chunk_s is None
    assert record.duration_s == pytest.approx(0.2)
    assert (record.input_tokens, record.output_tokens, record.cost_usd) == (5, 3, None)


def test_an_inner_refusal_is_recorded_with_its_status_and_re_raised(
    seam: Seam, clock: FakeClock
) -> None:
    async def refuse(call: Call) -> None:
        call.decided_by = ("default/search-may-chat",)
        clock.advance(0.001)
        raise GatewayError(429, "budget spent", type="rate_limit_error", code="budget_exceeded")

    call = make_call({"model": "chat", "messages": [], "stream": True})
    with pytest.raises(GatewayError) as raised:
        seam.run(call, refuse)
    assert raised.value.status == 429
    record = seam.only_record()
    assert (record.status, record.error, record.input_tokens) == (429, "budget_exceeded", None)
    assert record.policy == "default/search-may-chat"
    assert record.time_to_first_chunk_s is None
    assert (
        seam.sample("corral_gateway_requests_total", endpoint="chat", team="search", status="429")
        == 1
    )
    seam.telemetry.force_flush()
    (span,) = seam.spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["error.type"] == "budget_exceeded"


def test_a_crash_or_a_cancellation_inside_is_recorded_too(seam: Seam) -> None:
    async def crash(_call: Call) -> None:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        seam.run(make_call({"model": "chat", "messages": []}), crash)

    async def cancelled(call: Call) -> None:
        call.upstream_status = 200
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        seam.run(make_call({"model": "chat", "messages": []}), cancelled)
    newest, oldest = seam.telemetry.store.query()
    assert (oldest.status, oldest.error) == (500, "RuntimeError")
    assert (newest.status, newest.error) == (200, "client_disconnected")


def test_calls_that_are_not_inference_or_lack_an_endpoint_pass_untraced(seam: Seam) -> None:
    passed: list[str] = []

    async def inner(call: Call) -> None:
        passed.append(call.path)

    models = make_call({})
    models.operation = ""  # e.g. GET /v1/models
    seam.run(models, inner)
    unresolved = make_call({"model": "chat"})
    unresolved.endpoint = None
    seam.run(unresolved, inner)
    assert len(passed) == 2
    assert len(seam.telemetry.store) == 0


def test_a_caller_without_a_team_is_labelled_none(seam: Seam) -> None:
    async def inner(call: Call) -> None:
        call.upstream_status = 200

    workload = Principal("workload", "spiffe://corral.local/ns/default/agent/bot")
    seam.run(make_call({"model": "chat", "messages": []}, workload), inner)
    assert seam.only_record().team == "none"


def test_content_is_kept_only_when_capture_is_on(tmp_path: Path, clock: FakeClock) -> None:
    capturing = Seam(tmp_path, TelemetryConfig(capture_content=True, max_content_chars=100))
    try:
        prompt = [{"role": "user", "content": PROMPT}]
        usage = UsageReport(11, 2, True)
        capturing.run(
            make_call({"model": "chat", "messages": prompt, "stream": True}),
            relaying(clock, CHUNKS, usage),
        )
        capturing.run(
            make_call({"model": "chat", "messages": prompt}), relaying(clock, (ANSWER,), usage)
        )
        plain, streamed = capturing.telemetry.store.query()
        for record in (plain, streamed):
            assert record.input_content is not None
            assert PROMPT in record.input_content
            assert record.output_content == "Hello there"
        assert streamed.time_to_first_chunk_s == pytest.approx(0.03)
        assert plain.time_to_first_chunk_s is None  # a streaming measure only
    finally:
        capturing.telemetry.shutdown()


def test_start_reads_the_environment_and_aclose_flushes_the_trace_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "CORRAL_OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CORRAL_TRACES_MAX", "3")
    server = context(tmp_path)
    extension = TelemetryExtension(server)

    async def lifecycle() -> None:
        await extension.start()
        assert extension.ready
        telemetry = extension.telemetry
        assert telemetry is not None
        assert not telemetry.config.exporting  # no endpoint: nothing leaves the process
        assert not telemetry.config.capture_content
        assert telemetry.persisted is not None
        assert telemetry.persisted.path == tmp_path / TRACES_FILE

        async def inner(call: Call) -> None:
            call.upstream_status = 200

        for _ in range(5):
            await extension.stage(make_call({"model": "chat", "messages": []}), inner)
        await extension.aclose()
        assert extension.telemetry is None

    asyncio.run(lifecycle())
    reopened = Telemetry(TelemetryConfig(trace_db_path=tmp_path / TRACES_FILE))
    try:
        assert reopened.persisted is not None
        assert len(reopened.persisted) == 3  # the newest CORRAL_TRACES_MAX
    finally:
        reopened.shutdown()
    # The extension's metrics went to the process registry that /metrics serves.
    assert (
        server.metrics.get_sample_value(
            "corral_gateway_requests_total", {"endpoint": "chat", "team": "search", "status": "200"}
        )
        == 5
    )


def test_a_bad_setting_stops_the_start_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")
    extension = TelemetryExtension(context(tmp_path))
    with pytest.raises(ValueError, match="otlp_endpoint"):
        asyncio.run(extension.start())
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        asyncio.run(extension.start())
