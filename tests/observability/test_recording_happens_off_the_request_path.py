import time

from opentelemetry import context, trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from corral.observability import Telemetry, TelemetryConfig
from corral.observability._recorder import Recorder

from .helpers import Captured, chat_info

PARENT = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
)


def test_finish_only_queues_and_the_recorder_thread_builds_the_span(captured: Captured) -> None:
    recorder = captured.telemetry.recorder
    assert recorder is not None
    captured.telemetry.start(chat_info()).finish(200)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the thread wakes on its own, no flush from here
        data = captured.metrics.get_metrics_data()
        if data is not None and data.resource_metrics:
            break
        time.sleep(0.01)
    else:
        raise AssertionError("the recorder thread never recorded the finished request")


def test_a_span_active_at_start_becomes_the_parent(captured: Captured) -> None:
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(PARENT)))
    try:
        request = captured.telemetry.start(chat_info())
    finally:
        context.detach(token)
    record = request.finish(200)
    captured.telemetry.force_flush()

    [span] = captured.spans.get_finished_spans()
    assert span.parent is not None
    assert (span.parent.trace_id, span.parent.span_id) == (PARENT.trace_id, PARENT.span_id)
    assert record is not None
    assert record.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert span.context.trace_id == PARENT.trace_id


def test_when_the_recorder_falls_behind_calls_are_counted_as_dropped_not_queued() -> None:
    spans = InMemorySpanExporter()
    telemetry = Telemetry(TelemetryConfig(), span_exporter=spans, metric_reader=None)
    try:
        slow = Recorder(
            telemetry.otel, telemetry.model_label, None, max_queue=2, wake_every=1000, interval_s=60
        )
        assert telemetry.recorder is not None
        telemetry.recorder.close()
        telemetry.recorder = slow
        for _ in range(5):
            telemetry.start(chat_info()).finish(200)
        assert slow.dropped == 3
        assert len(telemetry.store) == 5  # the store and Prometheus still see every request
    finally:
        telemetry.shutdown()
    assert len(spans.get_finished_spans()) == 2


def test_metrics_only_pipelines_build_no_spans() -> None:
    reader = InMemoryMetricReader()
    with Telemetry(TelemetryConfig(), metric_reader=reader) as telemetry:
        assert telemetry.otel.tracer is None
        telemetry.start(chat_info()).finish(200)
        telemetry.force_flush()
        data = reader.get_metrics_data()
        assert data is not None
        [scope] = data.resource_metrics[0].scope_metrics
        assert {m.name for m in scope.metrics} == {"gen_ai.client.operation.duration"}
