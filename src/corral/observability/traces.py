"""The embedded trace store: the last finished requests, kept in memory and queryable.

``RequestTelemetry.finish`` appends one ``TraceRecord`` per request; ``corral traces`` and the
console read them back filtered by endpoint, team, time and status, newest first. The store
is a ring buffer (``deque(maxlen=...)``): appending is O(1) and atomic under the GIL, so the
request path never waits on a reader, and memory stays bounded however busy the gateway is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

FIRST_CHUNK_EVENT = "gen_ai.first_chunk"


class TraceRecord(NamedTuple):
    """One finished request, with the same facts its span carries.

    A named tuple rather than a frozen dataclass: it is built once per request, and a tuple
    builds in a third of the time a frozen dataclass's ``__init__`` takes for 23 fields.
    """

    trace_id: str
    started_at: float
    """Wall-clock start, seconds since the epoch."""
    duration_s: float
    time_to_first_chunk_s: float | None
    operation: str
    endpoint: str
    team: str
    policy: str | None
    provider: str
    request_model: str
    response_model: str | None
    server_address: str | None
    stream: bool
    max_tokens: int | None
    temperature: float | None
    input_tokens: int | None
    output_tokens: int | None
    finish_reasons: tuple[str, ...]
    cost_usd: float | None
    status: int
    error: str | None
    input_content: str | None = None
    output_content: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or self.status >= 400

    @property
    def error_type(self) -> str:
        """``error.type`` in the GenAI conventions: the error code, else the HTTP status."""
        return self.error or str(self.status)

    @property
    def span_name(self) -> str:
        """``{gen_ai.operation.name} {gen_ai.request.model}``, as the GenAI conventions name it."""
        return f"{self.operation} {self.request_model}"

    def span_attributes(self) -> dict[str, Any]:
        """The attributes of this request's span (GenAI semantic conventions, plus corral's)."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": self.operation,
            "gen_ai.provider.name": self.provider,
            "gen_ai.system": self.provider,  # the pre-1.37 name, still what many backends read
            "gen_ai.request.model": self.request_model,
            "corral.endpoint": self.endpoint,
            "corral.team": self.team,
            "corral.stream": self.stream,
            "http.response.status_code": self.status,
        }
        optional = (
            ("server.address", self.server_address),
            ("gen_ai.request.max_tokens", self.max_tokens),
            ("gen_ai.request.temperature", self.temperature),
            ("gen_ai.response.model", self.response_model),
            ("gen_ai.usage.input_tokens", self.input_tokens),
            ("gen_ai.usage.output_tokens", self.output_tokens),
            ("corral.policy", self.policy),
            ("corral.cost_usd", self.cost_usd),
            ("corral.time_to_first_chunk_s", self.time_to_first_chunk_s),
            ("gen_ai.input.messages", self.input_content),
            ("gen_ai.output.messages", self._output_messages()),
        )
        for key, value in optional:
            if value is not None:
                attributes[key] = value
        if self.finish_reasons:
            attributes["gen_ai.response.finish_reasons"] = self.finish_reasons
        if self.failed:
            attributes["error.type"] = self.error_type
        return attributes

    def span_events(self) -> list[tuple[str, float]]:
        """``(name, epoch seconds)`` of what happened inside the span: the first chunk's arrival."""
        if self.time_to_first_chunk_s is None:
            return []
        return [(FIRST_CHUNK_EVENT, self.started_at + self.time_to_first_chunk_s)]

    def to_dict(self) -> dict[str, Any]:
        record = self._asdict()
        record["finish_reasons"] = list(self.finish_reasons)
        return record

    def _output_messages(self) -> str | None:
        if self.output_content is None:
            return None
        message: dict[str, Any] = {
            "role": "assistant",
            "parts": [{"type": "text", "content": self.output_content}],
        }
        if self.finish_reasons:
            message["finish_reason"] = self.finish_reasons[0]
        return orjson.dumps([message]).decode()


class TraceStore:
    """A bounded ring buffer of ``TraceRecord``s, oldest dropped first."""

    __slots__ = ("_records",)

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"trace store capacity must be an integer >= 1, got {capacity!r}")
        self._records: deque[TraceRecord] = deque(maxlen=capacity)

    @property
    def capacity(self) -> int:
        assert self._records.maxlen is not None  # set in __init__
        return self._records.maxlen

    def __len__(self) -> int:
        return len(self._records)

    def append(self, record: TraceRecord) -> None:
        self._records.append(record)

    def get(self, trace_id: str) -> TraceRecord | None:
        return next((r for r in self._newest_first() if r.trace_id == trace_id), None)

    def query(
        self,
        *,
        endpoint: str | None = None,
        team: str | None = None,
        since: float | None = None,
        until: float | None = None,
        status: int | None = None,
        failed: bool | None = None,
        limit: int = 100,
    ) -> list[TraceRecord]:
        """Records matching every given filter, newest first, at most ``limit``.

        ``since``/``until`` bound the start time (epoch seconds, ``since`` inclusive, ``until``
        exclusive); ``status`` is the exact HTTP status; ``failed`` picks errors or successes.
        """
        check_query(since, until, limit)
        matches: list[TraceRecord] = []
        for record in self._newest_first():
            if endpoint is not None and record.endpoint != endpoint:
                continue
            if team is not None and record.team != team:
                continue
            if since is not None and record.started_at < since:
                continue
            if until is not None and record.started_at >= until:
                continue
            if status is not None and record.status != status:
                continue
            if failed is not None and record.failed != failed:
                continue
            matches.append(record)
            if len(matches) == limit:
                break
        return matches

    def _newest_first(self) -> Iterator[TraceRecord]:
        # A snapshot: iterating the live deque would fail if a request finished meanwhile.
        return reversed(list(self._records))


def check_query(since: float | None, until: float | None, limit: int) -> None:
    if limit < 1:
        raise ValueError(f"trace query limit must be >= 1, got {limit}")
    if since is not None and until is not None and until < since:
        raise ValueError(f"trace query: until ({until}) is before since ({since})")
