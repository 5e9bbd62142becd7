"""The telemetry extension: GenAI spans and metrics, Prometheus samples and the trace store for
every gateway request.

Being built; until then the extension takes part in nothing.
"""

from __future__ import annotations

from corral.server.extensions import Extension


class TelemetryExtension(Extension):
    name = "telemetry"
