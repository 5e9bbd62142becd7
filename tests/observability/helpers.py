from dataclasses import dataclass

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from corral.observability import CallInfo, Telemetry, TelemetryConfig


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
