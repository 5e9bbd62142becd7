import pytest

from corral.observability import TelemetryConfig


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"otlp_endpoint": "collector:4318"}, r"otlp_endpoint: must be an http:// or https://"),
        ({"otlp_endpoint": "http://"}, r"otlp_endpoint: .* got 'http://'"),
        ({"otlp_headers": {"": "x"}}, r"otlp_headers: names and values must be strings"),
        ({"otlp_headers": {"a": "b\r\nc: d"}}, r"otlp_headers\['a'\]: must not contain newlines"),
        ({"otlp_timeout_s": 0}, r"otlp_timeout_s: must be a number > 0, got 0"),
        ({"metric_export_interval_s": -1.0}, r"metric_export_interval_s: must be a number > 0"),
        ({"max_content_chars": 0}, r"max_content_chars: must be an integer >= 1, got 0"),
        ({"trace_store_capacity": 1.5}, r"trace_store_capacity: must be an integer >= 1"),
        ({"max_label_values": True}, r"max_label_values: must be an integer >= 1, got True"),
        ({"service_name": ""}, r"service_name: must be a non-empty string"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TelemetryConfig(**settings)  # type: ignore[arg-type]


def test_export_urls_follow_the_otlp_endpoint_convention() -> None:
    config = TelemetryConfig(otlp_endpoint="https://otel.example:4318/")
    assert config.exporting
    assert config.otlp_url("traces") == "https://otel.example:4318/v1/traces"
    assert config.otlp_url("metrics") == "https://otel.example:4318/v1/metrics"
    with pytest.raises(ValueError, match="export is off"):
        TelemetryConfig().otlp_url("traces")


def test_headers_cannot_be_changed_after_start() -> None:
    headers = {"x-key": "a"}
    config = TelemetryConfig(otlp_headers=headers)
    headers["x-key"] = "b"
    assert config.otlp_headers == {"x-key": "a"}
    with pytest.raises(TypeError):
        config.otlp_headers["x-key"] = "c"  # type: ignore[index]
