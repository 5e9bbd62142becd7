"""The OpenTelemetry side: providers, exporters and the GenAI instruments, built once.

Spans go through a ``BatchSpanProcessor``: ending a span only queues it, and a background
thread exports batches, so a slow or dead collector never delays a request (a full queue drops
spans rather than blocking). Metrics are aggregated in memory and exported by a periodic reader.
Neither provider is installed globally: the gateway owns its pipeline, and tests build their
own without leaking into each other. Span trace ids come from ``PresetTraceIds`` so the span
built later, off the request path, carries the id the trace store already handed out.
"""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import Histogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Tracer

from corral.observability.config import TelemetryConfig

SCOPE = "corral.observability"
SPAN_QUEUE = 8192
# Bucket boundaries the GenAI semantic conventions advise for these two histograms.
TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48)


class PresetTraceIds(RandomIdGenerator):
    """Random ids, except that the next root span takes the trace id set in ``preset``.

    Only the recorder thread starts spans on this provider, so a plain attribute suffices.
    """

    def __init__(self) -> None:
        self.preset: int | None = None

    def generate_trace_id(self) -> int:
        if self.preset is not None:
            trace_id, self.preset = self.preset, None
            return trace_id
        return super().generate_trace_id()


class OtelPipeline:
    """The tracer and GenAI histograms, or None for each signal that is off."""

    def __init__(
        self,
        config: TelemetryConfig,
        span_exporter: SpanExporter | None,
        metric_reader: MetricReader | None,
    ) -> None:
        resource = Resource.create({"service.name": config.service_name})
        if span_exporter is None and config.exporting:
            span_exporter = OTLPSpanExporter(
                endpoint=config.otlp_url("traces"),
                headers=dict(config.otlp_headers),
                timeout=config.otlp_timeout_s,
            )
        if metric_reader is None and config.exporting:
            metric_reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(
                    endpoint=config.otlp_url("metrics"),
                    headers=dict(config.otlp_headers),
                    timeout=config.otlp_timeout_s,
                ),
                export_interval_millis=config.metric_export_interval_s * 1000,
            )
        self.tracer_provider: TracerProvider | None = None
        self.tracer: Tracer | None = None
        self.trace_ids = PresetTraceIds()
        if span_exporter is not None:
            self.tracer_provider = TracerProvider(
                resource=resource, id_generator=self.trace_ids, shutdown_on_exit=False
            )
            # As deep as the recorder's queue, so a drained burst is not dropped here instead.
            self.tracer_provider.add_span_processor(
                BatchSpanProcessor(span_exporter, max_queue_size=SPAN_QUEUE)
            )
            self.tracer = self.tracer_provider.get_tracer(SCOPE)
        self.meter_provider: MeterProvider | None = None
        self.token_usage: Histogram | None = None
        self.operation_duration: Histogram | None = None
        self.time_to_first_chunk: Histogram | None = None
        if metric_reader is not None:
            self.meter_provider = MeterProvider(
                metric_readers=[metric_reader], resource=resource, shutdown_on_exit=False
            )
            meter = self.meter_provider.get_meter(SCOPE)
            self.token_usage = meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            )
            self.operation_duration = meter.create_histogram(
                "gen_ai.client.operation.duration",
                unit="s",
                description="GenAI operation duration.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )
            self.time_to_first_chunk = meter.create_histogram(
                "gen_ai.client.operation.time_to_first_chunk",
                unit="s",
                description="Time to receive the first chunk of a streamed response.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )

    @property
    def enabled(self) -> bool:
        return self.tracer is not None or self.operation_duration is not None

    def force_flush(self, timeout_s: float) -> bool:
        millis = int(timeout_s * 1000)
        done = True
        if self.tracer_provider is not None:
            done = self.tracer_provider.force_flush(millis) and done
        if self.meter_provider is not None:
            done = self.meter_provider.force_flush(millis) and done
        return done

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
