"""The telemetry extension: GenAI spans and metrics, Prometheus samples and the trace store for
every gateway request (``corral.observability`` wired into a server process).

One ``Telemetry`` per process, configured from the environment when the extension starts
(``TelemetryConfig.from_environ``): OTLP/HTTP export of spans and GenAI metrics only when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``CORRAL_OTEL_EXPORTER_OTLP_ENDPOINT``) is set, otherwise
nothing leaves the process; prompts and answers are recorded only when
``CORRAL_TELEMETRY_CAPTURE_CONTENT=true``. Its Prometheus metrics (requests, tokens, cost,
duration, time to first chunk, by endpoint and team, bounded label sets) go on the process's
registry, which ``/metrics`` serves; budget and guardrail metrics are registered there by their
own extensions. Finished traces are kept in ``STATE_DIR/traces.db`` (the newest
``CORRAL_TRACES_MAX`` rows, default 100,000, none older than ``CORRAL_TRACES_MAX_AGE``, default
7d), written in batches by a background thread. ``aclose`` records what is queued and flushes
the exporters.

The gateway stage is the outermost governance stage, so it times and labels every outcome,
including refusals by the stages inside it (the refusal's status is recorded, then re-raised).
It costs a few µs per request: the span and GenAI histograms are built later, off the request
path (``corral.observability``). The API serves recent traces to ``corral traces``:
``GET /corral/v1/traces?endpoint=&team=&status=&since=&until=&limit=`` (newest first) and
``GET /corral/v1/traces/{trace_id}`` (one, with its span attributes and events).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from corral.api.errors import ApiError, BadRequest, NotFound
from corral.gateway import OPERATIONS, Call, GatewayError, Handler, Stage
from corral.observability import (
    CallInfo,
    RequestTelemetry,
    StreamUsage,
    Telemetry,
    TelemetryConfig,
    TraceRecord,
)
from corral.server.extensions import Extension, ServerContext

TRACES_FILE = "traces.db"
TRACES_PATH = "/corral/v1/traces"
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
NO_TEAM = "none"
"""The team label of a caller that belongs to no team (a workload without one)."""
MAX_CAPTURED_BODY = 1 << 20
"""With content capture on, a non-streamed answer longer than this is not parsed for text."""

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_OPERATION_NAMES = frozenset(OPERATIONS.values())


class TelemetryExtension(Extension):
    name = "telemetry"

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        self.telemetry: Telemetry | None = None
        self._hosts: dict[str, str] = {}  # replica URL -> host, so the stage parses each once

    async def start(self) -> None:
        config = TelemetryConfig.from_environ(
            os.environ, trace_db_path=self.context.state_dir / TRACES_FILE
        )
        # Budget remaining and guardrail events are the budget and guardrail extensions' own.
        self.telemetry = await asyncio.to_thread(
            Telemetry, config, registry=self.context.metrics, governance_metrics=False
        )

    @property
    def ready(self) -> bool:
        return self.telemetry is not None

    async def aclose(self) -> None:
        telemetry, self.telemetry = self.telemetry, None
        if telemetry is not None:
            # Records what is queued, writes it to the trace database, flushes the exporters.
            await asyncio.to_thread(telemetry.shutdown)

    # -- the gateway stage ------------------------------------------------------------------

    def gateway_stages(self) -> Sequence[Stage]:
        return (self.stage,)

    async def stage(self, call: Call, call_next: Handler) -> None:
        telemetry = self.telemetry
        endpoint = call.endpoint
        if telemetry is None or endpoint is None or call.operation not in _OPERATION_NAMES:
            await call_next(call)
            return
        request = telemetry.start(
            CallInfo.from_request(
                call.operation,
                call.payload,
                endpoint=endpoint.public_name,
                team=_team(call),
                provider=endpoint.runtime,
            )
        )
        capture = telemetry.config.capture_content
        if call.stream or capture:
            call.response_hooks.append(
                ResponseTiming(request, call.stream, telemetry.config.max_content_chars)
                if capture
                else FirstChunk(request)
            )
        status = 500
        error: str | None = None
        try:
            await call_next(call)
            status = call.upstream_status or 500
        except GatewayError as refused:
            status, error = refused.status, refused.code or refused.type
            raise
        except asyncio.CancelledError:
            status, error = call.upstream_status or 499, "client_disconnected"
            raise
        except Exception as failure:
            status, error = 500, type(failure).__name__
            raise
        finally:
            usage = call.usage
            if usage is not None:
                request.usage(usage.input_tokens, usage.output_tokens)
                request.response(usage.response_model, usage.finish_reasons)
            if call.cost_usd is not None:
                request.cost(call.cost_usd)
            if call.decided_by:
                request.set_policy(",".join(call.decided_by))
            if call.served_by is not None:
                request.server(self._host(call.served_by))
            request.finish(status, error)

    def _host(self, address: str) -> str:
        host = self._hosts.get(address)
        if host is None:
            host = urlsplit(address).hostname or address
            if len(self._hosts) < 4096:
                self._hosts[address] = host
        return host

    # -- the API ----------------------------------------------------------------------------

    def api_routes(self) -> Sequence[BaseRoute]:
        return (
            Route(TRACES_PATH, self._list, methods=["GET"]),
            Route(TRACES_PATH + "/{trace_id}", self._one, methods=["GET"]),
        )

    async def _list(self, request: Request) -> JSONResponse:
        telemetry = self.telemetry
        if telemetry is None:
            return _status(ApiError("telemetry is not running in this process"))
        try:
            query = trace_query(dict(request.query_params), time.time())
        except ValueError as error:
            return _status(BadRequest(str(error)))
        records = await asyncio.to_thread(_query, telemetry, query)
        return JSONResponse(
            {"items": [record.to_dict() for record in records], "limit": query["limit"]}
        )

    async def _one(self, request: Request) -> JSONResponse:
        telemetry = self.telemetry
        if telemetry is None:
            return _status(ApiError("telemetry is not running in this process"))
        trace_id = request.path_params["trace_id"]
        if not _TRACE_ID.match(trace_id):
            return _status(
                BadRequest(f"trace id {trace_id!r}: expected 32 lower-case hexadecimal digits")
            )
        record = await asyncio.to_thread(_get, telemetry, trace_id)
        if record is None:
            return _status(
                NotFound(f"trace {trace_id} not found (traces are kept for a limited time)")
            )
        return JSONResponse(trace_detail(record))


class FirstChunk:
    """Marks the request's first non-empty response chunk; passes every byte through."""

    __slots__ = ("_request",)
    rewrites = False

    def __init__(self, request: RequestTelemetry) -> None:
        self._request: RequestTelemetry | None = request

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        pass

    def chunk(self, data: bytes) -> bytes:
        if data and self._request is not None:
            self._request.first_chunk()
            self._request = None  # later chunks cost one attribute test
        return data

    def end(self) -> bytes:
        return b""


class ResponseTiming:
    """``FirstChunk`` plus the answer's text for content capture (only built when it is on)."""

    __slots__ = ("_body", "_request", "_stream", "_text")
    rewrites = False

    def __init__(self, request: RequestTelemetry, stream: bool, max_chars: int) -> None:
        self._request = request
        self._stream = stream
        self._text = StreamUsage(keep_text_chars=max_chars) if stream else None
        self._body: bytearray | None = None if stream else bytearray()

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        pass

    def chunk(self, data: bytes) -> bytes:
        if data:
            self._request.first_chunk()
            if self._text is not None:
                self._text.feed(data)
            elif self._body is not None:
                self._body += data
                if len(self._body) > MAX_CAPTURED_BODY:
                    self._body = None  # too long to be worth parsing: record no text
        return data

    def end(self) -> bytes:
        if self._text is not None:
            self._text.report()  # reads a last event that had no trailing newline
            self._request.output_text(self._text.text)
        elif self._body:
            self._request.output_text(answer_text(bytes(self._body)))
        return b""


def answer_text(body: bytes) -> str:
    """The generated text of a non-streamed chat or completion answer ("" when none)."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    parts: list[str] = []
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else choice.get("text")
        if isinstance(content, str):
            parts.append(content)
    return "".join(parts)


def _team(call: Call) -> str:
    principal = call.principal
    if principal is None:
        return NO_TEAM
    return principal.team or NO_TEAM


# -- reading traces ---------------------------------------------------------------------------


def trace_query(params: dict[str, str], now: float) -> dict[str, Any]:
    """The store query for ``GET /corral/v1/traces``' parameters; ValueError names the one at
    fault. ``status`` is an HTTP status or ``error``/``ok``; ``since``/``until`` a duration
    before now (``15m``, ``24h``, ``7d``) or an RFC 3339 time."""
    unknown = sorted(set(params) - {"endpoint", "team", "status", "since", "until", "limit"})
    if unknown:
        raise ValueError(
            f"unknown query parameter {unknown[0]!r}: use endpoint, team, status, since, until, "
            "limit"
        )
    query: dict[str, Any] = {"limit": DEFAULT_LIMIT}
    for name in ("endpoint", "team"):
        if params.get(name):
            query[name] = params[name]
    status = params.get("status")
    if status:
        if status in ("error", "ok"):
            query["failed"] = status == "error"
        elif status.isdigit() and 100 <= int(status) <= 599:
            query["status"] = int(status)
        else:
            raise ValueError(f"status {status!r}: expected an HTTP status (100..599), error or ok")
    for name in ("since", "until"):
        if params.get(name):
            query[name] = time_bound(params[name], now, name=name)
    if "since" in query and "until" in query and query["until"] <= query["since"]:
        raise ValueError("until must be later than since")
    raw_limit = params.get("limit")
    if raw_limit:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise ValueError(f"limit {raw_limit!r}: expected an integer 1..{MAX_LIMIT}")
        query["limit"] = int(raw_limit)
    return query


def time_bound(text: str, now: float, *, name: str) -> float:
    """Unix seconds of a duration before ``now`` or of an RFC 3339 time."""
    value = text.strip()
    match = _DURATION.match(value)
    if match is not None:
        return now - int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z")) if "T" in value.upper() else None
    except ValueError:
        moment = None
    if moment is None:
        raise ValueError(
            f"{name} {text!r}: expected a duration like 30m, 24h, 7d or an RFC 3339 time like "
            "2026-01-31T12:00:00Z"
        )
    if moment.tzinfo is None:
        raise ValueError(f"{name} {text!r}: give the time zone (Z or +01:00)")
    return moment.timestamp()


def trace_detail(record: TraceRecord) -> dict[str, Any]:
    """One trace as ``GET /corral/v1/traces/{id}`` answers: the record, its span's name,
    attributes (GenAI conventions) and events."""
    return {
        **record.to_dict(),
        "span_name": record.span_name,
        "attributes": {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in record.span_attributes().items()
        },
        "events": [
            {"name": name, "time": _rfc3339(at), "at": at} for name, at in record.span_events()
        ],
    }


def _query(telemetry: Telemetry, query: dict[str, Any]) -> list[TraceRecord]:
    persisted = telemetry.persisted
    if persisted is None:
        return telemetry.store.query(**query)
    _drain(telemetry)
    return persisted.query(**query)


def _get(telemetry: Telemetry, trace_id: str) -> TraceRecord | None:
    persisted = telemetry.persisted
    if persisted is None:
        return telemetry.store.get(trace_id)
    found = telemetry.store.get(trace_id)
    if found is not None:
        return found
    _drain(telemetry)
    return persisted.get(trace_id)


def _drain(telemetry: Telemetry) -> None:
    # This process's latest requests are in the database before it is read.
    if telemetry.recorder is not None:
        telemetry.recorder.drain()


def _status(error: ApiError) -> JSONResponse:
    return JSONResponse(error.to_status(), status_code=error.code)


def _rfc3339(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")
