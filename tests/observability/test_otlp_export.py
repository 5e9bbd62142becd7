import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from corral.observability import Telemetry, TelemetryConfig

from .helpers import chat_info

Received = list[tuple[str, str | None, bytes]]


class _Collector(BaseHTTPRequestHandler):
    received: Received

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers.get("x-ingest-key"), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        del format, args  # keep the test output clean


@pytest.fixture
def collector() -> Iterator[tuple[str, Received]]:
    received: Received = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_spans_and_metrics_reach_the_configured_otlp_http_endpoint_with_headers(
    collector: tuple[str, Received],
) -> None:
    url, received = collector
    config = TelemetryConfig(otlp_endpoint=url, otlp_headers={"x-ingest-key": "k-123"})
    with Telemetry(config) as telemetry:
        request = telemetry.start(chat_info())
        request.usage(2, 3)
        request.finish(200)
    # Leaving the block shut the pipeline down, which flushes both signals.

    by_path = {path: (key, body) for path, key, body in received}
    assert set(by_path) == {"/v1/traces", "/v1/metrics"}
    assert {key for key, _ in by_path.values()} == {"k-123"}
    traces = ExportTraceServiceRequest.FromString(by_path["/v1/traces"][1])
    [span] = traces.resource_spans[0].scope_spans[0].spans
    assert span.name == "chat chat"
    metrics = ExportMetricsServiceRequest.FromString(by_path["/v1/metrics"][1])
    names = {m.name for m in metrics.resource_metrics[0].scope_metrics[0].metrics}
    assert names == {"gen_ai.client.operation.duration", "gen_ai.client.token.usage"}


def test_export_is_off_unless_an_endpoint_is_configured() -> None:
    with Telemetry(TelemetryConfig()) as telemetry:
        assert telemetry.otel.tracer_provider is None
        assert telemetry.otel.meter_provider is None
        assert telemetry.force_flush() is True
