from corral.observability import OVERFLOW, BoundedLabel, TelemetryConfig

from .helpers import build, chat_info


def test_values_past_the_cap_and_overlong_values_become_other() -> None:
    label = BoundedLabel(2)
    assert [label(v) for v in ("a", "b", "c", "a", "d", "b")] == [
        "a",
        "b",
        OVERFLOW,
        "a",
        OVERFLOW,
        "b",
    ]
    assert label.admitted == {"a", "b"}
    assert BoundedLabel(10)("m" * 500) == OVERFLOW


def test_a_client_inventing_names_cannot_grow_the_series_count() -> None:
    captured = build(TelemetryConfig(max_label_values=3))
    try:
        for i in range(50):
            info = chat_info(endpoint=f"endpoint-{i}", team=f"team-{i}", request_model=f"m-{i}")
            captured.telemetry.start(info).finish(200 + i)

        requests = [
            sample
            for metric in captured.registry.collect()
            if metric.name == "corral_gateway_requests"
            for sample in metric.samples
            if sample.name == "corral_gateway_requests_total"
        ]
        endpoints = {s.labels["endpoint"] for s in requests}
        teams = {s.labels["team"] for s in requests}
        statuses = {s.labels["status"] for s in requests}
        assert endpoints == {"endpoint-0", "endpoint-1", "endpoint-2", OVERFLOW}
        assert teams == {"team-0", "team-1", "team-2", OVERFLOW}
        assert statuses == {"200", "201", "202", OVERFLOW}
        assert sum(s.value for s in requests) == 50

        captured.telemetry.force_flush()
        data = captured.metrics.get_metrics_data()
        assert data is not None
        models = {
            point.attributes["gen_ai.request.model"]  # type: ignore[index]
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            for point in metric.data.data_points
        }
        assert models == {"m-0", "m-1", "m-2", OVERFLOW}
    finally:
        captured.telemetry.shutdown()
