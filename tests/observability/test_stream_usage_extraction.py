import orjson
import pytest

from corral.observability import StreamUsage, UsageReport, usage_from_response

OPENAI_STREAM_WITH_USAGE = (
    b'data: {"id":"chatcmpl-AZ1","object":"chat.completion.chunk","created":1732400000,'
    b'"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,'
    b'"finish_reason":null}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-AZ1","object":"chat.completion.chunk","created":1732400000,'
    b'"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,'
    b'"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-AZ1","object":"chat.completion.chunk","created":1732400000,'
    b'"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,'
    b'"delta":{"content":" there!"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-AZ1","object":"chat.completion.chunk","created":1732400000,'
    b'"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,'
    b'"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-AZ1","object":"chat.completion.chunk","created":1732400000,'
    b'"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[],'
    b'"usage":{"prompt_tokens":19,"completion_tokens":3,"total_tokens":22,'
    b'"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},'
    b'"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,'
    b'"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n'
    b"data: [DONE]\n\n"
)


def _llamacpp_chunk(content: str | None, finish_reason: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    chunk = {
        "id": "chatcmpl-7",
        "object": "chat.completion.chunk",
        "created": 1732400000,
        "model": "qwen2.5-0.5b-instruct-q4_k_m.gguf",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"


LLAMACPP_STREAM_WITHOUT_USAGE = (
    b": keep-alive\n\n"
    + b"".join(_llamacpp_chunk(token) for token in ("The", " sky", " is", " blue", "."))
    + _llamacpp_chunk(None, "stop")
    + b"data: [DONE]\r\n\r\n"
)


def _feed_in_pieces(stream: bytes, size: int) -> UsageReport:
    usage = StreamUsage()
    for start in range(0, len(stream), size):
        usage.feed(stream[start : start + size])
    return usage.report()


@pytest.mark.parametrize("piece_size", [1, 7, 64, 100_000])
def test_the_final_usage_chunk_gives_exact_numbers_however_the_bytes_are_split(
    piece_size: int,
) -> None:
    assert _feed_in_pieces(OPENAI_STREAM_WITH_USAGE, piece_size) == UsageReport(
        input_tokens=19,
        output_tokens=3,
        exact=True,
        finish_reasons=("stop",),
        response_model="gpt-4o-mini-2024-07-18",
    )


@pytest.mark.parametrize("piece_size", [1, 13, 100_000])
def test_without_a_usage_chunk_output_is_counted_one_token_per_content_chunk(
    piece_size: int,
) -> None:
    assert _feed_in_pieces(LLAMACPP_STREAM_WITHOUT_USAGE, piece_size) == UsageReport(
        input_tokens=None,
        output_tokens=5,
        exact=False,
        finish_reasons=("stop",),
        response_model="qwen2.5-0.5b-instruct-q4_k_m.gguf",
    )


def test_chunks_packing_many_tokens_are_counted_by_characters() -> None:
    usage = StreamUsage(keep_text_chars=10)
    usage.feed(_llamacpp_chunk("x" * 40) + _llamacpp_chunk("y" * 3, "length"))
    report = usage.report()
    assert (report.output_tokens, report.exact, report.finish_reasons) == (11, False, ("length",))
    assert usage.text == "x" * 10


def test_a_last_event_without_a_trailing_newline_still_counts() -> None:
    stream = OPENAI_STREAM_WITH_USAGE.replace(b"\n\ndata: [DONE]\n\n", b"")
    assert _feed_in_pieces(stream, 50).input_tokens == 19


def test_tool_call_arguments_and_legacy_completion_text_are_output() -> None:
    usage = StreamUsage()
    usage.feed_chunk(
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"q": 1}'}}]},
                }
            ]
        }
    )
    usage.feed_chunk({"choices": [{"index": 0, "text": "hello", "finish_reason": "stop"}]})
    # 2 content chunks, 13 characters: the character estimate (ceil(13 / 4)) is the larger.
    assert usage.report().output_tokens == 4


def test_usage_of_a_whole_response_body() -> None:
    body = {
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9},
    }
    assert usage_from_response(body) == UsageReport(8, 1, True, ("stop",), body["model"])
    assert usage_from_response({"object": "list", "data": [], "usage": {"prompt_tokens": 4}}) == (
        UsageReport(4, 0, True)
    )
    assert usage_from_response({"choices": []}) is None
    assert usage_from_response({"usage": {"prompt_tokens": -1}}) is None
