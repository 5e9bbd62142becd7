import json

from corral.observability import TelemetryConfig

from .helpers import Captured, chat_info

SECRET = "my card number is 4111 1111 1111 1111"


def test_content_is_not_recorded_by_default(captured: Captured) -> None:
    assert TelemetryConfig().capture_content is False
    request = captured.telemetry.start(chat_info(input=[{"role": "user", "content": SECRET}]))
    request.output_text(SECRET)
    record = request.finish(200)
    captured.telemetry.force_flush()

    assert record is not None
    assert (record.input_content, record.output_content) == (None, None)
    [span] = captured.spans.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert "gen_ai.input.messages" not in attributes
    assert "gen_ai.output.messages" not in attributes
    assert SECRET not in repr(attributes)


def test_captured_content_is_recorded_and_cut_to_the_limit(capturing_content: Captured) -> None:
    request = capturing_content.telemetry.start(
        chat_info(input=[{"role": "user", "content": "hi"}])
    )
    request.output_text("Hello")
    request.output_text(" there")
    request.response(finish_reasons=["stop"])
    short = request.finish(200)
    long_request = capturing_content.telemetry.start(chat_info(input="x" * 100))
    for _ in range(10):
        long_request.output_text("y" * 10)
    long = long_request.finish(200)
    capturing_content.telemetry.force_flush()

    assert short is not None
    assert short.input_content == '[{"role":"user","content":"hi"}]'
    assert short.output_content == "Hello there"
    first_span = capturing_content.spans.get_finished_spans()[0]
    output_messages = (first_span.attributes or {})["gen_ai.output.messages"]
    assert isinstance(output_messages, str)
    assert json.loads(output_messages) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Hello there"}],
            "finish_reason": "stop",
        }
    ]
    assert long is not None
    assert long.input_content == '"' + "x" * 31 + "…[70 more chars]"
    assert long.output_content == "y" * 32 + "…[68 more chars]"
