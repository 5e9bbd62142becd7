"""How telemetry is set up for one process: where spans and metrics go, and what is kept.

Read once when the gateway starts and handed to ``Telemetry``. Export is off unless
``otlp_endpoint`` is set; prompt and response content are never recorded unless
``capture_content`` is on, and then each is cut to ``max_content_chars``. Every value is
checked here so a bad setting fails at start-up, naming the field, not on the first request.

``TelemetryConfig.from_environ`` reads the OpenTelemetry SDK's standard variables
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``..._HEADERS``, ``..._TIMEOUT``, ``..._PROTOCOL``,
``OTEL_SERVICE_NAME``, ``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_SDK_DISABLED``), each of which a
``CORRAL_``-prefixed twin overrides (``CORRAL_OTEL_EXPORTER_OTLP_ENDPOINT``) so corral can
export elsewhere than other instrumented programs sharing its environment; content capture
(``CORRAL_TELEMETRY_CAPTURE_CONTENT`` or the GenAI instrumentations'
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``) and the trace database's bounds
(``CORRAL_TRACES_MAX``, ``CORRAL_TRACES_MAX_AGE``) are corral's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit


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
    trace_db_max_age_s: float | None = 7 * 86_400.0
    """Traces older than this leave the trace database; None keeps them until ``max_rows``."""
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
        if self.trace_db_max_age_s is not None:
            _require_positive("trace_db_max_age_s", self.trace_db_max_age_s)
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

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], *, trace_db_path: str | Path | None = None
    ) -> TelemetryConfig:
        """The settings the environment asks for; ValueError names the variable at fault."""
        fields: dict[str, Any] = {"trace_db_path": trace_db_path}
        disabled = _flag(environ, "OTEL_SDK_DISABLED")
        endpoint = _otel(environ, "OTEL_EXPORTER_OTLP_ENDPOINT")
        if endpoint is not None and not disabled[1]:
            protocol = _otel(environ, "OTEL_EXPORTER_OTLP_PROTOCOL")
            if protocol is not None and protocol[1] != "http/protobuf":
                raise ValueError(
                    f"{protocol[0]}={protocol[1]!r}: corral exports OTLP over HTTP only; "
                    "set it to http/protobuf (or unset it) and point the endpoint at the "
                    "collector's HTTP port (4318)"
                )
            fields["otlp_endpoint"] = endpoint[1]
            headers = _otel(environ, "OTEL_EXPORTER_OTLP_HEADERS")
            if headers is not None:
                fields["otlp_headers"] = _headers(*headers)
            timeout = _otel(environ, "OTEL_EXPORTER_OTLP_TIMEOUT")
            if timeout is not None:  # milliseconds, as the OTel specification says
                fields["otlp_timeout_s"] = _number(*timeout) / 1000
            interval = _otel(environ, "OTEL_METRIC_EXPORT_INTERVAL")
            if interval is not None:  # milliseconds too
                fields["metric_export_interval_s"] = _number(*interval) / 1000
        service = _otel(environ, "OTEL_SERVICE_NAME")
        if service is not None:
            fields["service_name"] = service[1]
        capture = _flag(environ, "CORRAL_TELEMETRY_CAPTURE_CONTENT")
        if capture[0] is None:
            capture = _flag(environ, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
        fields["capture_content"] = capture[1]
        for name, key in (
            ("CORRAL_TELEMETRY_MAX_CONTENT_CHARS", "max_content_chars"),
            ("CORRAL_TRACES_MAX", "trace_db_max_rows"),
        ):
            raw = environ.get(name, "").strip()
            if raw:
                fields[key] = _integer(name, raw)
        age = environ.get("CORRAL_TRACES_MAX_AGE", "").strip()
        if age:
            fields["trace_db_max_age_s"] = (
                None if age == "0" else _duration("CORRAL_TRACES_MAX_AGE", age)
            )
        return cls(**fields)

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


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def _otel(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """``(variable, value)`` of ``CORRAL_<name>`` or else ``<name>``; None when neither is set."""
    for variable in (f"CORRAL_{name}", name):
        value = environ.get(variable, "").strip()
        if value:
            return variable, value
    return None


def _flag(environ: Mapping[str, str], name: str) -> tuple[str | None, bool]:
    found = _otel(environ, name) if name.startswith("OTEL_") else None
    if found is None and not name.startswith("OTEL_"):
        raw = environ.get(name, "").strip()
        found = (name, raw) if raw else None
    if found is None:
        return None, False
    variable, raw = found
    if raw.lower() in _TRUE:
        return variable, True
    if raw.lower() in _FALSE:
        return variable, False
    raise ValueError(f"{variable}={raw!r}: expected true or false")


def _headers(variable: str, raw: str) -> dict[str, str]:
    """W3C-baggage-like ``key=value,key2=value2`` with URL-encoded values, as OTel defines."""
    headers: dict[str, str] = {}
    for index, item in enumerate(raw.split(",")):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{variable}: entry {index + 1} ({item.strip()!r}) is not name=value")
        headers[unquote(name.strip())] = unquote(value.strip())
    return headers


def _number(variable: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{variable}={raw!r}: expected a number of milliseconds > 0")
    return value


def _integer(variable: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{variable}={raw!r}: expected an integer >= 1")
    return value


def _duration(variable: str, raw: str) -> float:
    """``3600`` (seconds) or ``90s``, ``30m``, ``12h``, ``7d``, ``2w``."""
    text = raw.lower()
    unit = _UNIT_SECONDS.get(text[-1:], 0)
    try:
        value = float(text[:-1] if unit else text) * (unit or 1)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(
            f"{variable}={raw!r}: expected a duration like 3600, 12h, 7d or 2w (0 keeps all)"
        )
    return value
