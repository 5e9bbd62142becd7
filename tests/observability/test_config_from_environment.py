"""``TelemetryConfig.from_environ``: the OpenTelemetry SDK's standard variables (and their
``CORRAL_`` twins), content capture off unless asked for, the trace database's bounds, and a
clear error naming the variable for every bad value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from corral.observability import TelemetryConfig


def test_nothing_set_exports_nothing_and_captures_no_content() -> None:
    config = TelemetryConfig.from_environ({})
    assert not config.exporting
    assert not config.capture_content
    assert config.trace_db_path is None
    assert config.trace_db_max_rows == 100_000
    assert config.trace_db_max_age_s == 7 * 86_400


def test_the_standard_otlp_variables_configure_export(tmp_path: Path) -> None:
    config = TelemetryConfig.from_environ(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example:4318/",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=abc%3D%3D, tenant = team-a",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_METRIC_EXPORT_INTERVAL": "15000",
            "OTEL_SERVICE_NAME": "corral-eu",
        },
        trace_db_path=tmp_path / "traces.db",
    )
    assert config.otlp_url("traces") == "https://collector.example:4318/v1/traces"
    assert dict(config.otlp_headers) == {"x-api-key": "abc==", "tenant": "team-a"}
    assert (config.otlp_timeout_s, config.metric_export_interval_s) == (2.5, 15.0)
    assert config.service_name == "corral-eu"
    assert config.trace_db_path == tmp_path / "traces.db"


def test_corral_twins_win_and_the_sdk_switch_turns_export_off() -> None:
    both = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://shared:4318",
        "CORRAL_OTEL_EXPORTER_OTLP_ENDPOINT": "http://corral-only:4318",
    }
    assert TelemetryConfig.from_environ(both).otlp_endpoint == "http://corral-only:4318"
    off = TelemetryConfig.from_environ({**both, "OTEL_SDK_DISABLED": "true"})
    assert not off.exporting


def test_content_capture_needs_an_explicit_true() -> None:
    assert TelemetryConfig.from_environ(
        {"CORRAL_TELEMETRY_CAPTURE_CONTENT": "true"}
    ).capture_content
    genai = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "True"}
    assert TelemetryConfig.from_environ(genai).capture_content
    # corral's own switch decides when both are set.
    both = {**genai, "CORRAL_TELEMETRY_CAPTURE_CONTENT": "false"}
    assert not TelemetryConfig.from_environ(both).capture_content
    assert not TelemetryConfig.from_environ(
        {"CORRAL_TELEMETRY_CAPTURE_CONTENT": ""}
    ).capture_content


def test_trace_database_bounds() -> None:
    config = TelemetryConfig.from_environ(
        {"CORRAL_TRACES_MAX": "500", "CORRAL_TRACES_MAX_AGE": "2d"}
    )
    assert (config.trace_db_max_rows, config.trace_db_max_age_s) == (500, 2 * 86_400)
    assert (
        TelemetryConfig.from_environ({"CORRAL_TRACES_MAX_AGE": "3600"}).trace_db_max_age_s == 3600
    )
    assert TelemetryConfig.from_environ({"CORRAL_TRACES_MAX_AGE": "0"}).trace_db_max_age_s is None


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "otlp_endpoint"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_HEADERS": "novalue",
            },
            "OTEL_EXPORTER_OTLP_HEADERS: entry 1",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TIMEOUT": "soon"},
            "OTEL_EXPORTER_OTLP_TIMEOUT='soon'",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "CORRAL_OTEL_METRIC_EXPORT_INTERVAL": "-5",
            },
            "CORRAL_OTEL_METRIC_EXPORT_INTERVAL='-5'",
        ),
        ({"CORRAL_TELEMETRY_CAPTURE_CONTENT": "maybe"}, "CORRAL_TELEMETRY_CAPTURE_CONTENT"),
        ({"OTEL_SDK_DISABLED": "nope"}, "OTEL_SDK_DISABLED"),
        ({"CORRAL_TRACES_MAX": "lots"}, "CORRAL_TRACES_MAX='lots'"),
        ({"CORRAL_TRACES_MAX_AGE": "a week"}, "CORRAL_TRACES_MAX_AGE='a week'"),
        ({"CORRAL_TELEMETRY_MAX_CONTENT_CHARS": "0"}, "CORRAL_TELEMETRY_MAX_CONTENT_CHARS"),
    ],
)
def test_a_bad_value_names_its_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        TelemetryConfig.from_environ(environ)
