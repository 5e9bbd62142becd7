"""The gateway's output hooks (``corral.server.guardrail_output``): streamed answers are redacted
exactly like the whole text, wherever the upstream split the text and however the bytes of the
event stream arrive; a blocking finding ends the choice with ``content_filter``."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from corral.guardrails import OUTPUT_DEFAULTS, GuardrailConfig, Guardrails
from corral.server.guardrail_output import JsonOutputHook, OutputHook, SseOutputHook

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
TEXT = f"Key {AWS_KEY} works; mail carol@example.com or call back."
OUTPUT = Guardrails(OUTPUT_DEFAULTS)
BLOCKING = Guardrails(GuardrailConfig(injection=None, type_actions={"aws_access_key_id": "block"}))


def sse(chunks: list[dict[str, Any]]) -> bytes:
    events = [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks]
    return b"".join(events) + b"data: [DONE]\n\n"


def chat_chunk(index: int, text: str | None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if text is None else {"content": text}
    choice = {"index": index, "delta": delta, "finish_reason": finish}
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "choices": [choice]}


def relay(hook: SseOutputHook | JsonOutputHook, body: bytes, step: int, status: int = 200) -> bytes:
    hook.start(status, [])
    out = [hook.chunk(body[i : i + step]) for i in range(0, len(body), step)]
    return b"".join(out) + hook.end()


def events(body: bytes) -> list[bytes]:
    assert body.endswith(b"\n\n")
    return body[:-2].split(b"\n\n")


def texts(body: bytes, field: str = "content") -> dict[int, str]:
    found: dict[int, str] = {}
    for event in events(body):
        if event == b"data: [DONE]":
            continue
        for choice in orjson.loads(event[6:])["choices"]:
            holder = choice.get("delta", choice)
            found[choice["index"]] = found.get(choice["index"], "") + (holder.get(field) or "")
    return found


def test_a_split_at_every_position_and_any_byte_chunking_is_redacted_like_the_whole() -> None:
    expected = OUTPUT.scan_text(TEXT).redacted_text
    assert "[REDACTED:aws_access_key_id]" in expected
    assert "[REDACTED:email]" in expected
    for cut in range(len(TEXT) + 1):
        body = sse(
            [chat_chunk(0, TEXT[:cut]), chat_chunk(0, TEXT[cut:]), chat_chunk(0, None, "stop")]
        )
        for step in (1, 5, 64, len(body)):
            out = relay(SseOutputHook(OUTPUT.stream, "chat"), body, step)
            assert texts(out) == {0: expected}, (cut, step)
            assert AWS_KEY[:8].encode() not in out
            assert len(events(out)) == len(events(body))  # event boundaries are kept
            assert out.endswith(b"data: [DONE]\n\n")


def test_choices_are_screened_separately() -> None:
    mail = "reach me at dave@example.org today"
    chunks = []
    for cut in range(0, max(len(TEXT), len(mail)), 3):
        chunks.append(chat_chunk(0, TEXT[cut : cut + 3]))
        chunks.append(chat_chunk(1, mail[cut : cut + 3]))
    chunks += [chat_chunk(0, None, "stop"), chat_chunk(1, None, "stop")]
    out = relay(SseOutputHook(OUTPUT.stream, "chat"), sse(chunks), 11)
    assert texts(out) == {
        0: OUTPUT.scan_text(TEXT).redacted_text,
        1: "reach me at [REDACTED:email] today",
    }


def test_streamed_tool_call_arguments_are_redacted() -> None:
    arguments = f'{{"key": "{AWS_KEY}"}}'
    chunks = []
    for cut in range(0, len(arguments), 4):
        call = {"index": 0, "function": {"arguments": arguments[cut : cut + 4]}}
        choice = {"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}
        chunks.append({"id": "c", "choices": [choice]})
    chunks.append(chat_chunk(0, None, "tool_calls"))
    hook = SseOutputHook(OUTPUT.stream, "chat")
    out = relay(hook, sse(chunks), 9)
    sent = ""
    for event in events(out)[:-1]:
        for choice in orjson.loads(event[6:])["choices"]:
            for call in choice["delta"].get("tool_calls") or []:
                sent += call["function"]["arguments"]
    assert orjson.loads(sent) == {"key": "[REDACTED:aws_access_key_id]"}
    assert [(f.type, f.location) for f in hook.findings] == [
        ("aws_access_key_id", "choices[0].tool_calls[0].function.arguments")
    ]


def test_streamed_completions_use_the_text_field_and_release_before_the_usage_chunk() -> None:
    chunks: list[dict[str, Any]] = [
        {"id": "t", "choices": [{"index": 0, "text": TEXT[:9]}]},
        {"id": "t", "choices": [{"index": 0, "text": TEXT[9:]}]},
        {"id": "t", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}},
    ]
    out = relay(SseOutputHook(OUTPUT.stream, "text_completion"), sse(chunks), 7)
    assert texts(out, "text") == {0: OUTPUT.scan_text(TEXT).redacted_text}
    *_, usage, done = events(out)
    assert b'"usage"' in usage
    assert done == b"data: [DONE]"


def test_a_blocking_finding_ends_the_choice_with_content_filter() -> None:
    pieces = ["Key ", AWS_KEY[:5], AWS_KEY[5:], " and more text", " even more"]
    chunks = [chat_chunk(0, piece) for piece in pieces] + [chat_chunk(0, None, "stop")]
    hook = SseOutputHook(BLOCKING.stream, "chat")
    out = relay(hook, sse(chunks), 13)
    assert texts(out) == {0: "Key "}
    finishes = [
        c["finish_reason"] for e in events(out)[:-1] for c in orjson.loads(e[6:])["choices"]
    ]
    assert finishes[-1] == "content_filter"
    assert "stop" not in finishes
    assert [f.action for f in hook.findings] == ["block"]

    whole = orjson.dumps(
        {
            "choices": [
                {"index": 0, "message": {"content": "".join(pieces)}, "finish_reason": "stop"}
            ]
        }
    )
    answer = orjson.loads(relay(JsonOutputHook(BLOCKING.stream, "chat"), whole, 10))
    assert answer["choices"][0] == {
        "index": 0,
        "message": {"content": "Key "},
        "finish_reason": "content_filter",
    }


def test_whole_answers_redact_content_and_tool_arguments() -> None:
    arguments = f'{{"key": "{AWS_KEY}"}}'
    message = {
        "role": "assistant",
        "content": TEXT,
        "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": arguments}}
        ],
    }
    body = orjson.dumps({"id": "x", "choices": [{"index": 0, "message": message}], "usage": {}})
    hook = JsonOutputHook(OUTPUT.stream, "chat")
    answer = orjson.loads(relay(hook, body, 17))
    got = answer["choices"][0]["message"]
    assert got["content"] == OUTPUT.scan_text(TEXT).redacted_text
    assert orjson.loads(got["tool_calls"][0]["function"]["arguments"]) == {
        "key": "[REDACTED:aws_access_key_id]"
    }
    assert answer["usage"] == {}
    assert sorted({f.location for f in hook.findings}) == [
        "choices[0].message.content",
        "choices[0].tool_calls[0].function.arguments",
    ]


@pytest.mark.parametrize("hook_type", [SseOutputHook, JsonOutputHook])
def test_error_answers_pass_byte_for_byte(
    hook_type: type[SseOutputHook] | type[JsonOutputHook],
) -> None:
    error = b'{"error": {"message": "AKIAIOSFODNN7EXAMPLE is not a model"}}'
    assert relay(hook_type(OUTPUT.stream, "chat"), error, 5, status=400) == error


def test_clean_answers_keep_their_text_and_their_events() -> None:
    whole = b'{ "choices": [{"index": 0, "message": {"content": "Hello there"}}]}'
    assert relay(JsonOutputHook(OUTPUT.stream, "chat"), whole, 6) == whole  # not re-serialised
    text = "Hello there, how are you doing today?"
    streamed = sse(
        [chat_chunk(0, text[:12]), chat_chunk(0, text[12:]), chat_chunk(0, None, "stop")]
    )
    out = relay(SseOutputHook(OUTPUT.stream, "chat"), streamed, 6)
    assert texts(out) == {0: text}
    assert len(events(out)) == len(events(streamed))


@pytest.mark.parametrize("content_type", [b"text/event-stream; charset=utf-8", b"application/json"])
def test_the_answer_is_screened_as_what_it_is_whatever_was_asked(content_type: bytes) -> None:
    streamed = b"event-stream" in content_type
    if streamed:
        body = sse([chat_chunk(0, TEXT[:7]), chat_chunk(0, TEXT[7:]), chat_chunk(0, None, "stop")])
    else:
        body = orjson.dumps({"choices": [{"index": 0, "message": {"content": TEXT}}]})
    hook = OutputHook(OUTPUT.stream, "chat")
    hook.start(200, [(b"content-type", content_type)])
    out = b"".join(hook.chunk(body[i : i + 9]) for i in range(0, len(body), 9)) + hook.end()
    expected = OUTPUT.scan_text(TEXT).redacted_text
    if streamed:
        assert texts(out) == {0: expected}
    else:
        assert orjson.loads(out)["choices"][0]["message"]["content"] == expected
    assert AWS_KEY.encode() not in out
    assert {f.type for f in hook.findings} == {"aws_access_key_id", "email"}


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_crlf_and_cr_event_streams_are_screened_at_any_byte_split(newline: bytes) -> None:
    body = sse([chat_chunk(0, TEXT[:20]), chat_chunk(0, TEXT[20:]), chat_chunk(0, None, "stop")])
    body = body.replace(b"\n", newline)
    expected = OUTPUT.scan_text(TEXT).redacted_text
    for step in (1, 2, 3, 50, len(body)):
        out = relay(SseOutputHook(OUTPUT.stream, "chat"), body, step)
        assert texts(out) == {0: expected}, step
        assert AWS_KEY[:8].encode() not in out
        assert out.endswith(b"data: [DONE]\n\n")


def test_a_stream_cut_before_its_last_blank_line_is_still_screened() -> None:
    body = sse([chat_chunk(0, TEXT)])[: -len(b"data: [DONE]\n\n")].rstrip(b"\n")
    out = relay(SseOutputHook(OUTPUT.stream, "chat"), body, 7)
    assert texts(out) == {0: OUTPUT.scan_text(TEXT).redacted_text}
    assert AWS_KEY[:8].encode() not in out


def test_events_with_other_fields_and_split_data_lines_are_screened() -> None:
    first = orjson.dumps(chat_chunk(0, TEXT))
    half = len(first) // 2
    body = (
        b": keep-alive\n\n"
        + b"id: 7\nevent: message\ndata: " + first[:half] + b"\ndata:" + first[half:] + b"\n\n"
        + b"data: " + orjson.dumps(chat_chunk(0, None, "stop")) + b"\n\ndata: [DONE]\n\n"
    )  # fmt: skip
    out = relay(SseOutputHook(OUTPUT.stream, "chat"), body, 11)
    assert AWS_KEY[:8].encode() not in out
    assert out.startswith(b": keep-alive\n\nid: 7\nevent: message\ndata: {")
    found = ""
    for event in events(out):
        for line in event.split(b"\n"):
            if line.startswith(b"data: {"):
                for choice in orjson.loads(line[6:])["choices"]:
                    found += choice["delta"].get("content") or ""
    assert found == OUTPUT.scan_text(TEXT).redacted_text


def test_text_released_at_the_end_comes_in_a_chunk_headed_like_the_latest() -> None:
    """Held-back text released before [DONE] goes out as a chunk of its own, with the id,
    object, created and model of the latest chunk that had choices, and only its own choice."""
    latest = {**chat_chunk(0, " bye carol@example.com"), "id": "c2", "model": "m2", "extra": 1}
    body = sse([chat_chunk(0, "Hello"), latest])
    out = relay(SseOutputHook(OUTPUT.stream, "chat"), body, 1_000)
    *_, released, done = events(out)
    chunk = orjson.loads(released[6:])
    assert {k: chunk[k] for k in ("id", "object", "created", "model")} == {
        "id": "c2",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m2",
    }
    assert "extra" not in chunk
    assert [choice["index"] for choice in chunk["choices"]] == [0]
    assert texts(out) == {0: OUTPUT.scan_text("Hello bye carol@example.com").redacted_text}
    assert done == b"data: [DONE]"
