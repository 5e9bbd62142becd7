"""How telemetry is set up for one process: where spans and metrics go, and what is kept.

Read once when the gateway starts and handed to ``Telemetry``. Export is off unless
``otlp_endpoint`` is set; prompt and response content are never recorded unless
``capture_content`` is on, and then each is cut to ``max_content_chars``. Every value is
checked here so a bad setting fails at start-up, naming the field, not on the first request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """Settings for ``Telemetry``; the defaults export nothing and capture no content."""

    otlp_endpoint: str | None = None
    """OTLP/HTTP base URL (``http://collector:4318``); ``/v1/traces`` and ``/v1/metrics`` are
    appended, as for ``OTEL_EXPORTER_OTLP_ENDPOINT``. None turns export off."""
    otlp_headers: Mapping[str, str] = field(default_factory=dict)
    """Sent with every export request (an ingest key, a tenant header)."""
    otlp_timeout_s: float = 10.0
    metric_export_interval_s: float = 30.0
    service_name: str = "corral-gateway"
    capture_content: bool = False
    """Record prompts and responses on spans and traces; off because they may hold secrets."""
    max_content_chars: int = 4096
    trace_store_capacity: int = 2048
    """Finished request traces kept in memory for ``corral traces`` and the console."""
    trace_db_path: str | Path | None = None
    """An SQLite file (in the state dir) that also keeps finished traces; None keeps none."""
    trace_db_max_rows: int = 100_000
    max_label_values: int = 64
    """Distinct values kept per metric label (endpoint, team, ...); the rest count as ``other``."""

    def __post_init__(self) -> None:
        if self.otlp_endpoint is not None:
            parts = urlsplit(self.otlp_endpoint)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(
                    "telemetry otlp_endpoint: must be an http:// or https:// URL with a host, "
                    f"got {self.otlp_endpoint!r}"
                )
        for name, value in self.otlp_headers.items():
            if not isinstance(name, str) or not name or not isinstance(value, str):
                raise ValueError(
                    "telemetry otlp_headers: names and values must be strings (names non-empty),"
                    f" got {name!r}: {value!r}"
                )
            if any(c in name + value for c in "\r\n"):
                raise ValueError(f"telemetry otlp_headers[{name!r}]: must not contain newlines")
        object.__setattr__(self, "otlp_headers", MappingProxyType(dict(self.otlp_headers)))
        _require_positive("otlp_timeout_s", self.otlp_timeout_s)
        _require_positive("metric_export_interval_s", self.metric_export_interval_s)
        if not self.service_name:
            raise ValueError("telemetry service_name: must be a non-empty string")
        limits = (
            "max_content_chars",
            "trace_store_capacity",
            "trace_db_max_rows",
            "max_label_values",
        )
        for name in limits:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"telemetry {name}: must be an integer >= 1, got {value!r}")

    @property
    def exporting(self) -> bool:
        return self.otlp_endpoint is not None

    def otlp_url(self, signal: str) -> str:
        """The full export URL for ``signal`` (``traces`` or ``metrics``)."""
        if self.otlp_endpoint is None:
            raise ValueError("telemetry otlp_endpoint is not set: export is off")
        return f"{self.otlp_endpoint.rstrip('/')}/v1/{signal}"


def _require_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"telemetry {name}: must be a number > 0, got {value!r}")
