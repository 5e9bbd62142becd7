"""The recorder thread works in slices: while it records a big backlog, a thread waiting for
the GIL (the server's event loop) gets it within about a slice, not only when CPython's switch
interval forces a switch. The switch interval is raised to 50 ms here so the difference is
unmistakable: without slices the waiting thread stalls for the whole interval. (Metrics only,
no span exporter: its batch thread would compete for the GIL too; the collector is paused so
its passes do not count as stalls.)"""

import gc
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from corral.observability import Telemetry, TelemetryConfig
from corral.observability._recorder import FinishedCall, Recorder

from .helpers import trace_record

BACKLOG = 12_000
SWITCH_INTERVAL_S = 0.05


@pytest.fixture
def long_switch_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def longest_stall_while_draining(slice_s: float) -> tuple[float, int]:
    """The longest gap a thread asking for the GIL every millisecond saw while the recorder
    drained ``BACKLOG`` calls on another thread, and the requests the metrics counted."""
    metrics = InMemoryMetricReader()
    telemetry = Telemetry(TelemetryConfig(), span_exporter=None, metric_reader=metrics)
    assert telemetry.recorder is not None
    telemetry.recorder.close()
    recorder = Recorder(
        telemetry.otel,
        telemetry.model_label,
        None,
        max_queue=BACKLOG,
        wake_every=BACKLOG + 1,
        interval_s=60,
        slice_s=slice_s,
    )
    try:
        now_ns = time.time_ns()
        for n in range(BACKLOG):
            recorder.submit(FinishedCall(trace_record(n), now_ns, 1_000_000, None, True))
        drainer = threading.Thread(target=recorder.drain, kwargs={"sliced": True})
        longest = 0.0
        gc.disable()
        drainer.start()
        last = time.perf_counter()
        while drainer.is_alive():
            time.sleep(0.001)  # releases the GIL; waking needs it back, like the event loop
            now = time.perf_counter()
            longest = max(longest, now - last - 0.001)
            last = now
        drainer.join()
        gc.enable()
        return longest, _requests_counted(metrics)
    finally:
        gc.enable()
        recorder.close()
        telemetry.shutdown()


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("long_switch_interval")
def test_a_waiting_thread_gets_the_gil_between_slices() -> None:
    sliced, recorded = longest_stall_while_draining(slice_s=0.0005)
    assert recorded == BACKLOG
    assert sliced < SWITCH_INTERVAL_S / 2, f"stalled {sliced * 1000:.1f} ms"

    # The same backlog recorded in one slice holds the waiting thread off for the whole
    # switch interval: what the slices exist to prevent (and proof the probe can see it).
    unsliced, recorded = longest_stall_while_draining(slice_s=3600.0)
    assert recorded == BACKLOG
    assert unsliced >= SWITCH_INTERVAL_S * 0.8, f"stalled only {unsliced * 1000:.1f} ms"


def _requests_counted(metrics: InMemoryMetricReader) -> int:
    data = metrics.get_metrics_data()
    assert data is not None
    counted = 0
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != "gen_ai.client.operation.duration":
                    continue
                for point in metric.data.data_points:
                    assert isinstance(point, HistogramDataPoint)
                    counted += point.count
    return counted
