"""The process-wide telemetry hub the gateway builds once and starts every request from.

It owns the OpenTelemetry pipeline (export off unless configured), the Prometheus metrics (on
the registry the caller passes, if any), the in-memory trace store and, when configured, the
trace database in the state dir; ``start`` hands out a
``RequestTelemetry`` per request. ``shutdown`` records and flushes what is queued and stops
the recorder and exporter threads; use the hub as a context manager so that always happens.
"""

from __future__ import annotations

from types import TracebackType

from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import CollectorRegistry

from corral.observability._otel import OtelPipeline
from corral.observability._recorder import Recorder
from corral.observability.config import TelemetryConfig
from corral.observability.labels import BoundedLabel
from corral.observability.prometheus import GatewayMetrics
from corral.observability.request import CallInfo, RequestTelemetry
from corral.observability.sqlite_store import SqliteTraceStore
from corral.observability.traces import TraceStore


class Telemetry:
    """Spans, GenAI metrics, Prometheus metrics and recent traces for one gateway process.

    ``span_exporter`` and ``metric_reader`` replace the OTLP ones (tests pass the SDK's
    in-memory exporter and reader); without them and without ``config.otlp_endpoint`` no span
    is built at all. ``governance_metrics=False`` leaves the budget and guardrail metrics to the
    pieces that own them (the server's budget and guardrail extensions register their own).
    """

    def __init__(
        self,
        config: TelemetryConfig | None = None,
        *,
        registry: CollectorRegistry | None = None,
        span_exporter: SpanExporter | None = None,
        metric_reader: MetricReader | None = None,
        governance_metrics: bool = True,
    ) -> None:
        self.config = config or TelemetryConfig()
        self.store = TraceStore(self.config.trace_store_capacity)
        self.metrics = (
            GatewayMetrics(
                registry,
                max_label_values=self.config.max_label_values,
                governance_metrics=governance_metrics,
            )
            if registry is not None
            else None
        )
        # Request models are client-chosen strings: bounded like Prometheus labels.
        self.model_label = BoundedLabel(self.config.max_label_values)
        self.otel = OtelPipeline(self.config, span_exporter, metric_reader)
        self.persisted = (
            SqliteTraceStore(
                self.config.trace_db_path,
                max_rows=self.config.trace_db_max_rows,
                max_age_s=self.config.trace_db_max_age_s,
            )
            if self.config.trace_db_path is not None
            else None
        )
        self.recorder = (
            Recorder(self.otel, self.model_label, self.persisted)
            if self.otel.enabled or self.persisted is not None
            else None
        )
        self._closed = False

    def start(self, info: CallInfo) -> RequestTelemetry:
        return RequestTelemetry(self, info)

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Record and export everything queued now; True when it all went out in time."""
        if self.recorder is not None:
            self.recorder.drain()
        return self.otel.force_flush(timeout_s)

    def shutdown(self) -> None:
        if not self._closed:
            self._closed = True
            if self.recorder is not None:
                self.recorder.close()
            if self.persisted is not None:
                self.persisted.close()
            self.otel.shutdown()

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()
