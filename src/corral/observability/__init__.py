"""Telemetry for the gateway: GenAI spans and metrics, Prometheus metrics, recent traces.

Build one ``Telemetry`` per process; per request ``telemetry.start(CallInfo(...))`` returns a
``RequestTelemetry`` with ``first_chunk()``, ``usage()``, ``finish()``. ``StreamUsage`` reads
token usage from a streamed response as it passes.
"""

from corral.observability.config import TelemetryConfig
from corral.observability.labels import OVERFLOW, BoundedLabel
from corral.observability.prometheus import GatewayMetrics
from corral.observability.request import CallInfo, RequestTelemetry
from corral.observability.sqlite_store import SqliteTraceStore
from corral.observability.telemetry import Telemetry
from corral.observability.traces import TraceRecord, TraceStore
from corral.observability.usage import StreamUsage, UsageReport, usage_from_response

__all__ = [
    "OVERFLOW",
    "BoundedLabel",
    "CallInfo",
    "GatewayMetrics",
    "RequestTelemetry",
    "SqliteTraceStore",
    "StreamUsage",
    "Telemetry",
    "TelemetryConfig",
    "TraceRecord",
    "TraceStore",
    "UsageReport",
    "usage_from_response",
]
