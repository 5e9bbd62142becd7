from typing import Any

from opentelemetry.sdk.metrics.export import HistogramDataPoint

from .helpers import Captured, chat_info


def _points(captured: Captured, name: str) -> list[HistogramDataPoint]:
    captured.telemetry.force_flush()
    data = captured.metrics.get_metrics_data()
    assert data is not None
    points: list[HistogramDataPoint] = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    points.extend(p for p in metric.data.data_points)  # type: ignore[misc]
    return points


def _sample(captured: Captured, name: str, **labels: str) -> Any:
    return captured.registry.get_sample_value(name, labels)


def test_token_usage_is_a_histogram_split_by_token_type(captured: Captured) -> None:
    for input_tokens, output_tokens in ((10, 100), (30, 300)):
        request = captured.telemetry.start(chat_info())
        request.usage(input_tokens, output_tokens)
        request.finish(200)

    points = _points(captured, "gen_ai.client.token.usage")
    by_type = {p.attributes["gen_ai.token.type"]: p for p in points}  # type: ignore[index]
    assert set(by_type) == {"input", "output"}
    assert (by_type["input"].count, by_type["input"].sum) == (2, 40)
    assert (by_type["output"].count, by_type["output"].sum) == (2, 400)
    assert by_type["input"].attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "chat",
        "server.address": "upstream.local",
        "gen_ai.token.type": "input",
    }


def test_duration_and_time_to_first_chunk_are_recorded_in_seconds(captured: Captured) -> None:
    streamed = captured.telemetry.start(chat_info(stream=True))
    streamed.first_chunk()
    streamed_record = streamed.finish(200)
    unstreamed = captured.telemetry.start(chat_info())
    unstreamed.first_chunk()  # not a stream: no time to first chunk
    unstreamed_record = unstreamed.finish(503, error="overloaded")
    assert streamed_record is not None
    assert unstreamed_record is not None
    assert unstreamed_record.time_to_first_chunk_s is None

    [duration_ok, duration_failed] = sorted(
        _points(captured, "gen_ai.client.operation.duration"),
        key=lambda p: "error.type" in (p.attributes or {}),
    )
    assert duration_ok.sum == streamed_record.duration_s
    assert duration_failed.sum == unstreamed_record.duration_s
    assert (duration_failed.attributes or {})["error.type"] == "overloaded"
    [ttfc] = _points(captured, "gen_ai.client.operation.time_to_first_chunk")
    assert ttfc.count == 1
    assert streamed_record.time_to_first_chunk_s is not None
    assert ttfc.sum == streamed_record.time_to_first_chunk_s
    assert 0 <= streamed_record.time_to_first_chunk_s <= streamed_record.duration_s


def test_prometheus_counts_requests_tokens_cost_and_latency(captured: Captured) -> None:
    for status in (200, 200, 429):
        request = captured.telemetry.start(chat_info(stream=True))
        request.first_chunk()
        request.usage(5, 7)
        request.cost(0.25)
        request.finish(status)

    labels = {"endpoint": "chat", "team": "search"}
    assert _sample(captured, "corral_gateway_requests_total", status="200", **labels) == 2
    assert _sample(captured, "corral_gateway_requests_total", status="429", **labels) == 1
    assert _sample(captured, "corral_gateway_tokens_total", type="input", **labels) == 15
    assert _sample(captured, "corral_gateway_tokens_total", type="output", **labels) == 21
    assert _sample(captured, "corral_gateway_cost_usd_total", **labels) == 0.75
    assert (
        _sample(captured, "corral_gateway_request_duration_seconds_count", status="200", **labels)
        == 2
    )
    assert _sample(captured, "corral_gateway_time_to_first_chunk_seconds_count", **labels) == 3


def test_guardrail_events_and_budget_remaining(captured: Captured) -> None:
    request = captured.telemetry.start(chat_info())
    request.guardrail("pii", "redact")
    request.guardrail("pii", "redact")
    request.guardrail("injection", "block")
    request.finish(400, error="guardrail_blocked")
    metrics = captured.telemetry.metrics
    assert metrics is not None
    metrics.set_budget_remaining("search-monthly", "search", 12.5)
    metrics.set_budget_remaining("search-monthly", "search", 11.0)

    event = {"endpoint": "chat", "team": "search"}
    assert (
        _sample(
            captured, "corral_guardrail_events_total", guardrail="pii", action="redact", **event
        )
        == 2
    )
    assert (
        _sample(
            captured,
            "corral_guardrail_events_total",
            guardrail="injection",
            action="block",
            **event,
        )
        == 1
    )
    assert (
        _sample(captured, "corral_budget_remaining_usd", budget="search-monthly", team="search")
        == 11.0
    )
