from dataclasses import dataclass

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from corral.observability import CallInfo, Telemetry, TelemetryConfig, TraceRecord


@dataclass
class Captured:
    telemetry: Telemetry
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    registry: CollectorRegistry


def chat_info(**overrides: object) -> CallInfo:
    fields: dict[str, object] = {
        "operation": "chat",
        "endpoint": "chat",
        "team": "search",
        "request_model": "chat",
        "provider": "openai",
        "server_address": "upstream.local",
        "max_tokens": 64,
        "temperature": 0.2,
        "input": [{"role": "user", "content": "what is corral?"}],
    }
    fields.update(overrides)
    return CallInfo(**fields)  # type: ignore[arg-type]


def build(config: TelemetryConfig) -> Captured:
    spans = InMemorySpanExporter()
    metrics = InMemoryMetricReader()
    registry = CollectorRegistry()
    telemetry = Telemetry(config, registry=registry, span_exporter=spans, metric_reader=metrics)
    return Captured(telemetry, spans, metrics, registry)


def trace_record(n: int, **overrides: object) -> TraceRecord:
    fields: dict[str, object] = {
        "trace_id": f"{n:032x}",
        "started_at": 1000.0 + n,
        "duration_s": 0.5,
        "time_to_first_chunk_s": None,
        "operation": "chat",
        "endpoint": "chat",
        "team": "search",
        "policy": None,
        "provider": "openai",
        "request_model": "chat",
        "response_model": None,
        "server_address": None,
        "stream": False,
        "max_tokens": None,
        "temperature": None,
        "input_tokens": 1,
        "output_tokens": 2,
        "finish_reasons": ("stop",),
        "cost_usd": None,
        "status": 200,
        "error": None,
    }
    fields.update(overrides)
    return TraceRecord(**fields)  # type: ignore[arg-type]
