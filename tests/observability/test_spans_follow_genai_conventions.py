import pytest
from opentelemetry.trace import SpanKind, StatusCode

from corral.observability import CallInfo, Telemetry

from .helpers import Captured, chat_info


def test_a_finished_chat_request_becomes_one_client_span_named_operation_and_model(
    captured: Captured,
) -> None:
    request = captured.telemetry.start(chat_info(policy="allow-search"))
    request.first_chunk()
    request.usage(12, 34)
    request.response("llama-3-8b-q4", ["stop"])
    request.cost(0.0042)
    record = request.finish(200)
    captured.telemetry.force_flush()

    [span] = captured.spans.get_finished_spans()
    assert span.name == "chat chat"
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "chat",
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.response.model": "llama-3-8b-q4",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 34,
        "gen_ai.response.finish_reasons": ("stop",),
        "server.address": "upstream.local",
        "http.response.status_code": 200,
        "corral.endpoint": "chat",
        "corral.team": "search",
        "corral.policy": "allow-search",
        "corral.cost_usd": 0.0042,
        "corral.stream": False,
    }
    assert span.status.status_code is StatusCode.UNSET
    assert record is not None
    assert record.trace_id == f"{span.context.trace_id:032x}"
    assert span.start_time is not None
    assert span.end_time is not None
    assert span.end_time - span.start_time == round(record.duration_s * 1e9)


def test_embeddings_and_completions_name_their_operation(captured: Captured) -> None:
    captured.telemetry.start(chat_info(operation="embeddings", request_model="embed")).finish(200)
    captured.telemetry.start(chat_info(operation="text_completion", request_model="base")).finish(
        200
    )
    captured.telemetry.force_flush()

    names = sorted(span.name for span in captured.spans.get_finished_spans())
    assert names == ["embeddings embed", "text_completion base"]


def test_a_failed_request_marks_the_span_as_error_with_its_type(captured: Captured) -> None:
    captured.telemetry.start(chat_info()).finish(502, error="upstream_unreachable")
    captured.telemetry.start(chat_info()).finish(429)
    captured.telemetry.force_flush()

    first, second = captured.spans.get_finished_spans()
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "upstream_unreachable"
    assert (first.attributes or {})["error.type"] == "upstream_unreachable"
    assert second.status.status_code is StatusCode.ERROR
    assert (second.attributes or {})["error.type"] == "429"


def test_finishing_twice_records_once(captured: Captured) -> None:
    request = captured.telemetry.start(chat_info())
    assert request.finish(200) is not None
    assert request.finish(500, error="late") is None
    captured.telemetry.force_flush()

    assert len(captured.spans.get_finished_spans()) == 1
    assert [r.status for r in captured.telemetry.store.query()] == [200]


def test_call_info_reads_the_openai_request_body() -> None:
    info = CallInfo.from_request(
        "chat",
        {
            "model": "chat",
            "messages": [{"role": "user", "content": "hi"}],
            "max_completion_tokens": 100,
            "max_tokens": 5,
            "temperature": 1,
            "stream": True,
        },
        endpoint="chat",
        team="search",
        provider="vllm",
    )
    assert (info.request_model, info.max_tokens, info.temperature, info.stream) == (
        "chat",
        100,
        1.0,
        True,
    )
    assert info.input == [{"role": "user", "content": "hi"}]
    # The same value as the checking constructor builds, and as immutable.
    assert info == CallInfo(
        operation="chat",
        endpoint="chat",
        team="search",
        request_model="chat",
        provider="vllm",
        stream=True,
        max_tokens=100,
        temperature=1.0,
        input=[{"role": "user", "content": "hi"}],
    )
    with pytest.raises(AttributeError):
        info.team = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"CallInfo.operation: .* got 'chat_completion'"):
        CallInfo.from_request("chat_completion", {}, endpoint="e", team="t", provider="openai")


def test_call_info_refuses_an_unknown_operation() -> None:
    with pytest.raises(ValueError, match=r"CallInfo.operation: .* got 'chat_completion'"):
        chat_info(operation="chat_completion")


def test_without_an_exporter_no_span_is_built_but_the_trace_is_kept() -> None:
    with Telemetry() as telemetry:
        assert telemetry.otel.tracer is None
        record = telemetry.start(chat_info()).finish(200)
        assert record is not None
        assert len(record.trace_id) == 32
        assert telemetry.store.query() == [record]


def test_trace_ids_the_gateway_makes_start_with_the_request_time_and_end_random() -> None:
    """Time first keeps the trace database's trace_id index appended in order; the last
    10 bytes stay random (W3C Trace Context wants the right-most 7 random)."""
    with Telemetry() as telemetry:
        records = []
        for _ in range(50):
            record = telemetry.start(chat_info()).finish(200)
            assert record is not None
            records.append(record)
    ids = [record.trace_id for record in records]
    assert all(len(trace_id) == 32 and int(trace_id, 16) != 0 for trace_id in ids)
    for record in records:
        # started_at is the same nanosecond reading as a float: allow its rounding.
        assert abs(int(record.trace_id[:12], 16) - record.started_at * 1000) <= 1
    assert ids == sorted(ids, key=lambda trace_id: trace_id[:12])
    assert len({trace_id[12:] for trace_id in ids}) == len(ids)  # the random part differs
