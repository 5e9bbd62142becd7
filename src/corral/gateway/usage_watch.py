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
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.observability import StreamUsage, UsageReport, usage_from_response

MAX_KEPT_BODY = 4 * 1024 * 1024
"""A non-streamed answer larger than this is relayed unread: its usage counts as unknown."""

_LF_EVENT_END = b"\n\n"
_CRLF_EVENT_END = b"\r\n\r\n"  # sse-starlette (llama-cpp-python's server) ends lines so
_USAGE_MARK = b'"usage"'


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

    __slots__ = ("_end", "_kept", "_kept_size", "_pending", "_stream", "_strip")

    def __init__(self, *, stream: bool, strip_usage_chunk: bool) -> None:
        self._stream = StreamUsage() if stream else None
        self._strip = stream and strip_usage_chunk
        self._pending = b""  # an incomplete SSE event held back while stripping
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
        if not self._strip:
            return data
        if self._pending:
            data = self._pending + data
            self._pending = b""
        end = self._end
        if end is None:
            if b"\n" not in data:
                self._pending = data
                return b""
            end = self._end = _CRLF_EVENT_END if b"\r\n" in data else _LF_EVENT_END
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

    def end(self) -> bytes:
        """Whatever is still held back when the upstream body ended."""
        rest, self._pending = self._pending, b""
        if rest and self._strip and _is_usage_only(rest):
            return b""
        return rest

    def report(self) -> UsageReport | None:
        if self._stream is not None:
            return self._stream.report()
        if self._kept_size > MAX_KEPT_BODY or not self._kept:
            return None
        try:
            body = orjson.loads(b"".join(self._kept))
        except orjson.JSONDecodeError:
            return None
        return usage_from_response(body) if isinstance(body, dict) else None


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
