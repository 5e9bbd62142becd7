"""Token usage of an upstream response, exact when the upstream reports it, counted when not.

Non-streamed responses carry ``usage`` in the body (``usage_from_response``). Streamed ones
carry it only in a final chunk (``choices: []`` plus ``usage``) when the request asked for
``stream_options.include_usage``; ``StreamUsage`` watches the SSE bytes as the gateway passes
them through and picks that chunk up.

When no usage chunk arrives the output is counted instead, and the report says so
(``exact=False``): output tokens are the larger of the number of chunks that carried content
(OpenAI, vLLM and llama.cpp send one token per chunk) and the content's characters divided by
four (the English average, which covers servers that pack several tokens into one chunk).
Input tokens are then unknown (``None``): the gateway's own prompt estimate stands in for them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import orjson

CHARS_PER_TOKEN = 4
MAX_PENDING_BYTES = 1 << 20
"""An SSE line longer than this is not a chat chunk; dropping it keeps memory bounded."""


@dataclass(frozen=True, slots=True)
class UsageReport:
    input_tokens: int | None
    output_tokens: int
    exact: bool
    """True when the upstream reported the numbers; False when output was counted."""
    finish_reasons: tuple[str, ...] = ()
    response_model: str | None = None


def usage_from_response(body: Mapping[str, Any]) -> UsageReport | None:
    """The usage of a non-streamed completion body, or None when it reports none."""
    usage = _usage_numbers(body.get("usage"))
    if usage is None:
        return None
    reasons = tuple(_finish_reasons(body.get("choices")))
    model = body.get("model")
    return UsageReport(usage[0], usage[1], True, reasons, model if isinstance(model, str) else None)


class StreamUsage:
    """Feed it the response bytes of an SSE stream as they pass; read ``report()`` at the end.

    Network chunks may split SSE lines anywhere; incomplete lines wait for the next feed.
    ``keep_text_chars`` keeps the start of the generated text for content capture.
    """

    __slots__ = (
        "_content_chars",
        "_content_chunks",
        "_keep_text_chars",
        "_last",
        "_model",
        "_pending",
        "_reasons",
        "_text",
        "_usage",
    )

    def __init__(self, *, keep_text_chars: int = 0) -> None:
        self._pending = b""
        self._usage: tuple[int, int] | None = None
        self._content_chunks = 0
        self._content_chars = 0
        self._reasons: dict[int, str] = {}
        self._model: str | None = None
        self._keep_text_chars = keep_text_chars
        self._text: list[str] = []
        self._last: Mapping[str, Any] | None = None

    def feed(self, data: bytes) -> None:
        if self._pending:
            data = self._pending + data
        lines = data.split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_PENDING_BYTES:
            self._pending = b""
        for line in lines:
            if line.startswith(b"data:"):
                self._data(line[5:].strip())

    def feed_chunk(self, chunk: Mapping[str, Any]) -> None:
        """Account for one already parsed ``chat.completion.chunk`` (or completion chunk)."""
        self._last = chunk
        usage = _usage_numbers(chunk.get("usage"))
        if usage is not None:
            self._usage = usage
        model = chunk.get("model")
        if isinstance(model, str) and model:
            self._model = model
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            text = _choice_text(choice)
            if text:
                self._content_chunks += 1
                self._content_chars += len(text)
                self._keep(text)
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                index = choice.get("index", 0)
                self._reasons[index if isinstance(index, int) else 0] = reason

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def saw_usage(self) -> bool:
        """Whether a chunk with usage numbers has gone by (lines fed so far)."""
        return self._usage is not None

    @property
    def last_chunk(self) -> Mapping[str, Any] | None:
        """The latest chunk read, for its ``id``, ``object``, ``created`` and ``model``."""
        return self._last

    @property
    def counted_output(self) -> int:
        """Output tokens counted from the content so far (see the module docstring)."""
        return max(self._content_chunks, math.ceil(self._content_chars / CHARS_PER_TOKEN))

    def report(self) -> UsageReport:
        if self._pending.startswith(b"data:"):
            # A stream that ended without a trailing newline still delivered its last event.
            self._data(self._pending[5:].strip())
            self._pending = b""
        reasons = tuple(self._reasons[i] for i in sorted(self._reasons))
        if self._usage is not None:
            return UsageReport(self._usage[0], self._usage[1], True, reasons, self._model)
        return UsageReport(None, self.counted_output, False, reasons, self._model)

    def _data(self, payload: bytes) -> None:
        if not payload or payload == b"[DONE]":
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return  # a comment or a foreign event: usage accounting must never fail a stream
        if isinstance(chunk, dict):
            self.feed_chunk(chunk)

    def _keep(self, text: str) -> None:
        room = self._keep_text_chars - sum(map(len, self._text))
        if room > 0:
            self._text.append(text[:room])


def _usage_numbers(usage: object) -> tuple[int, int] | None:
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
    if _is_count(prompt) and _is_count(completion):
        return prompt, completion
    return None


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _choice_text(choice: Mapping[str, Any]) -> str:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        parts = [delta.get("content"), delta.get("reasoning_content")]
        for call in delta.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                parts.append(function.get("arguments"))
        return "".join(p for p in parts if isinstance(p, str))
    text = choice.get("text")  # legacy completions stream text, not deltas
    return text if isinstance(text, str) else ""


def _finish_reasons(choices: object) -> list[str]:
    if not isinstance(choices, list):
        return []
    return [
        c["finish_reason"]
        for c in choices
        if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
    ]
