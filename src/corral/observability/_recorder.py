"""Finished requests become spans, GenAI metrics and trace database rows, off the request path.

The OTel SDK costs tens of µs per span and per histogram sample (attribute cleaning, hashing,
locks), which would otherwise sit on every request. ``RequestTelemetry.finish`` only queues a
``FinishedCall``; a daemon thread wakes every ``interval_s`` (or sooner when ``wake_every``
calls are waiting) and records them. The span gets the request's real start and end times and
its parent context from ``start``, so deferring changes nothing a trace backend sees. The
queue is bounded: when the thread falls behind, new calls are counted in ``dropped`` instead of
growing memory; the in-memory trace store and Prometheus still see every request. Each drained
batch goes to the trace database (when one is configured) in one transaction.

The thread works in slices: after each ``slice_s`` of recording it sleeps ``pause_s``, which
hands the GIL to the event loop. Without that the loop, waiting for the GIL, gets it back only
when CPython's switch interval (5 ms) forces a switch, so every drain of a few dozen calls
would add milliseconds to whatever requests arrive meanwhile. (``sleep(0)`` is not enough: the
releasing thread usually takes the GIL straight back before the waiting loop thread wakes.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import NamedTuple

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from corral.observability._otel import SPAN_QUEUE, OtelPipeline
from corral.observability.labels import BoundedLabel
from corral.observability.sqlite_store import SqliteTraceStore
from corral.observability.traces import TraceRecord

_log = logging.getLogger(__name__)


class FinishedCall(NamedTuple):
    """A finished request waiting for the recorder (a tuple: built on the request path)."""

    record: TraceRecord
    start_wall_ns: int
    duration_ns: int
    parent: Context | None
    """The context active at ``start``; a valid span in it becomes the span's parent."""
    root: bool
    """No parent span: the span starts a trace with ``record.trace_id``."""


class Recorder:
    """A bounded queue of finished calls and the thread that records and persists them."""

    def __init__(
        self,
        pipeline: OtelPipeline,
        model_label: BoundedLabel,
        persisted: SqliteTraceStore | None = None,
        *,
        max_queue: int = SPAN_QUEUE,
        wake_every: int = 256,
        interval_s: float = 0.1,
        slice_s: float = 0.0005,
        pause_s: float = 0.0001,
    ) -> None:
        self._pipeline = pipeline
        self._model_label = model_label
        self._persisted = persisted
        self._max_queue = max_queue
        self._wake_every = wake_every
        self._interval_s = interval_s
        self._slice_s = slice_s
        self._pause_s = pause_s
        self._queue: deque[FinishedCall] = deque()
        self._drain_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="corral-otel-recorder", daemon=True)
        self._thread.start()

    def submit(self, call: FinishedCall) -> None:
        if len(self._queue) >= self._max_queue:
            self.dropped += 1
            return
        self._queue.append(call)
        if len(self._queue) >= self._wake_every:
            self._wake.set()

    def drain(self, *, sliced: bool = False) -> None:
        """Record everything queued now, on the calling thread (``sliced``: pausing after
        every ``slice_s`` of work so the event loop gets the GIL)."""
        with self._drain_lock:
            batch: list[FinishedCall] = []
            while self._queue:
                batch.append(self._queue.popleft())
            # Without spans or GenAI metrics to build the calls only go to the trace database.
            recorded = batch if self._pipeline.enabled else ()
            slice_started = time.perf_counter()
            for call in recorded:
                try:
                    self._record(call)
                except Exception:
                    # One bad record must not stop telemetry for every later request.
                    _log.exception("could not record telemetry for trace %s", call.record.trace_id)
                if sliced and time.perf_counter() - slice_started >= self._slice_s:
                    time.sleep(self._pause_s)
                    slice_started = time.perf_counter()
            if self._persisted is not None and batch:
                try:
                    self._persisted.write([call.record for call in batch])
                except Exception:
                    _log.exception(
                        "could not write %d traces to %s", len(batch), self._persisted.path
                    )

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self.drain()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._interval_s)
            self._wake.clear()
            self.drain(sliced=True)

    def _record(self, call: FinishedCall) -> None:
        if self._pipeline.tracer is not None:
            self._span(call)
        if self._pipeline.operation_duration is not None:
            self._metrics(call.record)

    def _span(self, call: FinishedCall) -> None:
        tracer = self._pipeline.tracer
        assert tracer is not None  # checked by _record
        record = call.record
        attributes = record.span_attributes()
        if call.root:
            self._pipeline.trace_ids.preset = int(record.trace_id, 16)
        span = tracer.start_span(
            record.span_name,
            context=call.parent,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=call.start_wall_ns,
        )
        for name, at_s in record.span_events():
            span.add_event(name, timestamp=int(at_s * 1e9))
        if record.failed:
            span.set_status(Status(StatusCode.ERROR, record.error))
        span.end(end_time=call.start_wall_ns + call.duration_ns)

    def _metrics(self, record: TraceRecord) -> None:
        pipeline = self._pipeline
        assert pipeline.operation_duration is not None  # checked by _record
        attributes: dict[str, str] = {
            "gen_ai.operation.name": record.operation,
            "gen_ai.provider.name": record.provider,
            "gen_ai.request.model": self._model_label(record.request_model),
        }
        if record.response_model is not None:
            attributes["gen_ai.response.model"] = self._model_label(record.response_model)
        if record.server_address is not None:
            attributes["server.address"] = record.server_address
        if record.failed:
            attributes["error.type"] = record.error_type
        pipeline.operation_duration.record(record.duration_s, attributes)
        ttfc = record.time_to_first_chunk_s
        if ttfc is not None and pipeline.time_to_first_chunk is not None:
            pipeline.time_to_first_chunk.record(ttfc, attributes)
        if pipeline.token_usage is not None:
            for kind, tokens in (("input", record.input_tokens), ("output", record.output_tokens)):
                if tokens is not None:
                    pipeline.token_usage.record(tokens, {**attributes, "gen_ai.token.type": kind})
