"""Token usage of the response the gateway relays, read as the bytes pass.

Metering, rate limits, telemetry and audit all need to know what a request really used, so the
forwarding stage always watches the relayed answer: a streamed one through
``corral.observability.StreamUsage``, a non-streamed one by keeping its body (up to
``MAX_KEPT_BODY`` bytes) and reading its ``usage`` at the end.

Streamed usage is only exact when the upstream sends its usage chunk, which OpenAI-compatible
servers do when asked with ``stream_options.include_usage``. ``ask_for_stream_usage`` makes the
upstream request ask for it; when the client did not ask itself, ``UsageWatch`` removes that
extra chunk (``choices: []`` plus ``usage``) from what the client sees, so a client that reads
``chunk.choices[0]`` on every chunk keeps working.

Not every upstream honours the option (llama-cpp-python's server ignores ``stream_options``).
When the client asked for the usage chunk and none came before ``data: [DONE]``, ``UsageWatch``
supplies one there, as OpenAI sends it, from corral's own numbers: the output tokens counted
from the streamed content and the gateway's prompt estimate, marked ``"estimated": true`` inside
``usage`` so a client can tell them from an upstream's exact count. Counted output never
exceeds what the request allows (``max_tokens`` times ``n``, see ``output_cap``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import orjson

from corral.observability import StreamUsage, UsageReport, usage_from_response

MAX_KEPT_BODY = 4 * 1024 * 1024
"""A non-streamed answer larger than this is relayed unread: its usage counts as unknown."""

_LF_EVENT_END = b"\n\n"
_CRLF_EVENT_END = b"\r\n\r\n"  # sse-starlette (llama-cpp-python's server) ends lines so
_USAGE_MARK = b'"usage"'
_DONE = b"[DONE]"
_DONE_LINES = (b"data: [DONE]", b"data:[DONE]")


def ask_for_stream_usage(payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The payload to send upstream, and whether the client asked for the usage chunk itself.

    Only streamed requests change: ``stream_options.include_usage`` is set, other stream
    options kept.
    """
    options = payload.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return payload, True
    merged = {**options, "include_usage": True} if isinstance(options, dict) else None
    return {**payload, "stream_options": merged or {"include_usage": True}}, False


class UsageWatch:
    """Feed it every relayed chunk; ``report()`` once the body ended (None when unknown)."""

    __slots__ = (
        "_end",
        "_kept",
        "_kept_size",
        "_output_cap",
        "_pending",
        "_prompt_tokens",
        "_stream",
        "_strip",
        "_supply",
    )

    def __init__(
        self,
        *,
        stream: bool,
        strip_usage_chunk: bool,
        prompt_tokens: Callable[[], int] | None = None,
        output_cap: int | None = None,
    ) -> None:
        """``prompt_tokens`` (the request's prompt estimate), given for a stream whose client
        asked for the usage chunk, lets the watch supply that chunk when the upstream sends
        none. ``output_cap`` (the request's ``max_tokens`` times ``n``) bounds output that had
        to be counted: a model cannot have generated more."""
        self._stream = StreamUsage() if stream else None
        self._strip = stream and strip_usage_chunk
        self._supply = stream and not strip_usage_chunk and prompt_tokens is not None
        self._prompt_tokens = prompt_tokens
        self._output_cap = output_cap
        self._pending = b""  # an incomplete SSE event (or [DONE] line) held back
        self._kept: list[bytes] = []
        self._kept_size = 0
        self._end: bytes | None = None  # the event separator, learnt from the first bytes

    def chunk(self, data: bytes) -> bytes:
        """Account for ``data``; return what the client should get of it."""
        if self._stream is None:
            if self._kept_size <= MAX_KEPT_BODY:
                self._kept.append(data)
                self._kept_size += len(data)
            return data
        self._stream.feed(data)
        if not (self._strip or self._supply):
            return data
        if self._pending:
            data = self._pending + data
            self._pending = b""
        if self._end is None and b"\n" in data:
            self._end = _CRLF_EVENT_END if b"\r\n" in data else _LF_EVENT_END
        if self._supply:
            return self._supplied(data)
        end = self._end
        if end is None:
            self._pending = data
            return b""
        if _USAGE_MARK not in data:
            if data.endswith(end):
                return data
            # Keep an unfinished event back: its rest may carry the usage chunk's body.
            cut = data.rfind(end)
            if cut < 0:
                self._pending = data
                return b""
            self._pending = data[cut + len(end) :]
            return data[: cut + len(end)]
        events = data.split(end)
        self._pending = events.pop()
        return b"".join(event + end for event in events if not _is_usage_only(event))

    def _supplied(self, data: bytes) -> bytes:
        """``data`` with a usage chunk before its ``data: [DONE]`` line if none came before."""
        at = _done_line(data)
        if at < 0:
            # A chunk may end inside the [DONE] line: that tail waits for the rest.
            tail = data[data.rfind(b"\n") + 1 :]
            if tail and any(line.startswith(tail) for line in _DONE_LINES):
                self._pending = tail
                return data[: len(data) - len(tail)]
            return data
        self._supply = False  # one [DONE] per stream: the rest passes untouched
        stream = self._stream
        if stream is None or stream.saw_usage or self._prompt_tokens is None:
            return data
        end = self._end or _LF_EVENT_END
        usage = _usage_event(stream, self._prompt_tokens(), self._output_cap, end)
        return data[:at] + usage + data[at:]

    def end(self) -> bytes:
        """Whatever is still held back when the upstream body ended."""
        rest, self._pending = self._pending, b""
        if rest and self._strip and _is_usage_only(rest):
            return b""
        return rest

    def report(self) -> UsageReport | None:
        if self._stream is not None:
            report = self._stream.report()
            cap = self._output_cap
            if not report.exact and cap is not None and report.output_tokens > cap:
                return replace(report, output_tokens=cap)
            return report
        if self._kept_size > MAX_KEPT_BODY or not self._kept:
            return None
        try:
            body = orjson.loads(b"".join(self._kept))
        except orjson.JSONDecodeError:
            return None
        return usage_from_response(body) if isinstance(body, dict) else None


def output_cap(payload: Mapping[str, Any]) -> int | None:
    """The most output tokens the request allows (``max_completion_tokens`` or ``max_tokens``,
    times ``n``); None when it sets no limit."""
    for field_name in ("max_completion_tokens", "max_tokens"):
        limit = payload.get(field_name)
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            choices = payload.get("n")
            wanted = choices if isinstance(choices, int) and not isinstance(choices, bool) else 1
            return limit * max(wanted, 1)
    return None


def _done_line(data: bytes) -> int:
    """Where the ``data: [DONE]`` line starts in ``data`` (-1: none; the marker inside a
    chunk's JSON text is not one)."""
    at = data.find(_DONE)
    while at >= 0:
        start = data.rfind(b"\n", 0, at) + 1
        after = data[at + len(_DONE) : at + len(_DONE) + 1]
        if data[start:at] in (b"data: ", b"data:") and after in (b"", b"\r", b"\n"):
            return start
        at = data.find(_DONE, at + 1)
    return -1


def _usage_event(stream: StreamUsage, prompt_tokens: int, cap: int | None, end: bytes) -> bytes:
    """The usage chunk OpenAI sends last (``choices: []``), from corral's own count."""
    completion_tokens = stream.counted_output
    if cap is not None:
        completion_tokens = min(completion_tokens, cap)
    last = stream.last_chunk or {}
    chunk: dict[str, Any] = {
        key: last[key] for key in ("id", "object", "created", "model") if key in last
    }
    chunk["choices"] = []
    chunk["usage"] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "estimated": True,
    }
    return b"data: " + orjson.dumps(chunk) + end


def _is_usage_only(event: bytes) -> bool:
    """Whether one SSE event is the usage chunk: ``data: {... "choices": [], "usage": {...}}``."""
    if _USAGE_MARK not in event:
        return False
    for line in event.splitlines():
        if line.startswith(b"data:"):
            try:
                chunk = orjson.loads(line[5:].strip())
            except orjson.JSONDecodeError:
                return False
            return isinstance(chunk, dict) and chunk.get("choices") == [] and "usage" in chunk
    return False
