"""The usage extension: one usage record per completed gateway request, and sums over them.

Gateway processes run its stage: after the inner stages and the upstream call it notes who
called (principal, team, API key), which Endpoint and model, the tokens (exact when the
upstream reported them, else counted output and estimated prompt), the cost the budgets
extension priced (``call.cost_usd``, None without a price), the status and whether it
streamed. Requests refused before reaching an upstream (policy, rate limit, budget, guardrail)
leave no usage record: the audit log has them.

Records never wait on a database on the request path: they go into a bounded in-memory queue
that a background task writes in batches (every ``FLUSH_INTERVAL_S`` or as soon as
``FLUSH_BATCH`` records wait), and ``aclose`` writes what is left. When the queue is full
(the database is down or slower than the traffic) new records are dropped and counted in
``corral_usage_records_dropped_total``.

Records go to the store's PostgreSQL when the store is PostgreSQL (shared by every process of
the deployment), else to ``usage.db`` in the state dir. The API server answers
``GET /corral/v1/usage?by=team|key|model|endpoint&since=…&until=…`` from them (``since`` and
``until`` are RFC 3339 times or durations before now like ``24h``; ``corral usage`` calls it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from corral.api.errors import ApiError, BadRequest
from corral.gateway import Call, Handler, Stage
from corral.metering.estimate import estimate_prompt_tokens
from corral.server.config import APISERVER, is_postgres_url
from corral.server.extensions import Extension, ServerContext
from corral.store.usage_records import GROUPINGS, UsageRecord, open_usage_records

if TYPE_CHECKING:
    from corral.store.usage_records import PostgresUsageRecords, SqliteUsageRecords

    Records = PostgresUsageRecords | SqliteUsageRecords

_log = logging.getLogger(__name__)

USAGE_PATH = "/corral/v1/usage"
SQLITE_FILE = "usage.db"
FLUSH_INTERVAL_S = 0.1
FLUSH_BATCH = 500
QUEUE_LIMIT = 50_000
DEFAULT_SINCE = "24h"

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def time_bound(text: str, now: float, *, name: str) -> float:
    """Unix seconds for ``text``: an RFC 3339 time (``2026-11-24T08:00:00Z``) or a duration
    before ``now`` (``90s``, ``15m``, ``24h``, ``7d``, ``2w``). ValueError says what is wrong."""
    value = text.strip()
    match = _DURATION.match(value)
    if match is not None:
        return now - int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        moment = None
    if moment is None or "T" not in value.upper():
        raise ValueError(
            f"{name} {text!r}: expected a duration like 30m, 24h, 7d or an RFC 3339 time like "
            "2026-01-31T12:00:00Z"
        )
    if moment.tzinfo is None:
        raise ValueError(f"{name} {text!r}: give the time zone (Z or +01:00)")
    return moment.timestamp()


def records_url(context: ServerContext) -> str:
    if is_postgres_url(context.store_url):
        return context.store_url
    return f"sqlite:///{context.state_dir / SQLITE_FILE}"


def record_of(call: Call, now: float) -> UsageRecord | None:
    """The usage record of a finished call; None when no upstream answered it."""
    endpoint = call.endpoint
    if endpoint is None or call.upstream_status is None:
        return None
    usage, principal = call.usage, call.principal
    model = call.payload.get("model")
    input_tokens: int | None = None
    output_tokens, exact, served = 0, False, None
    if usage is not None:
        input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
        exact, served = usage.exact, usage.response_model
    if input_tokens is None:
        exact = False
        try:
            input_tokens = estimate_prompt_tokens(call.payload)
        except ValueError:
            input_tokens = 0
    if principal is None:
        kind = principal_id = team = api_key = None
    else:
        kind, principal_id, team = principal.kind, principal.id, principal.team
        api_key = principal_id if kind == "team-key" else None
    # Positional, in field order (the table's columns): a third of the keyword form's time.
    return UsageRecord(
        now,  # at
        endpoint.namespace,
        endpoint.name,
        model if isinstance(model, str) else endpoint.name,  # request_model
        served,
        kind,
        principal_id,
        team,
        api_key,
        input_tokens,
        output_tokens,
        exact,
        call.cost_usd,
        call.upstream_status,  # status
        call.stream,
    )


class UsageExtension(Extension):
    name = "usage"

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        self.records: Records | None = None
        self._queue: collections.deque[UsageRecord] = collections.deque()
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()  # the flusher and a summary may flush at once
        self._flusher: asyncio.Task[None] | None = None
        self.dropped = 0
        self._dropped_metric = Counter(
            "corral_usage_records_dropped",
            "Usage records dropped because the write queue was full",
            registry=context.metrics,
        )

    async def start(self) -> None:
        gateway = self.context.access is not None
        if not gateway and APISERVER not in self.context.config.roles:
            return
        self.records = await open_usage_records(records_url(self.context))
        if gateway:
            self._flusher = asyncio.create_task(self._flush_forever())

    def gateway_stages(self) -> Sequence[Stage]:
        return (self.stage,)

    def api_routes(self) -> Sequence[BaseRoute]:
        return [Route(USAGE_PATH, self._summary, methods=["GET"])]

    async def stage(self, call: Call, call_next: Handler) -> None:
        try:
            await call_next(call)
        finally:
            if self._flusher is not None:
                record = record_of(call, time.time())
                if record is not None:
                    self.enqueue(record)

    def enqueue(self, record: UsageRecord) -> None:
        if len(self._queue) >= QUEUE_LIMIT:
            self.dropped += 1
            self._dropped_metric.inc()
            return
        self._queue.append(record)
        if len(self._queue) >= FLUSH_BATCH:
            self._wake.set()

    async def _flush_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_INTERVAL_S)
            self._wake.clear()
            try:
                await self.flush()
            except Exception as error:
                # Kept in the queue: the next flush tries again (the queue bound drops the rest).
                _log.warning("usage records not written yet: %s", error)

    async def flush(self) -> None:
        """Write every queued record (in batches); on failure the records stay queued."""
        async with self._flushing:
            records = self.records
            while self._queue and records is not None:
                batch = [self._queue[i] for i in range(min(FLUSH_BATCH, len(self._queue)))]
                await records.append(batch)
                for _ in batch:
                    self._queue.popleft()

    async def _summary(self, request: Request) -> JSONResponse:
        records = self.records
        if records is None:
            return _status(ApiError("usage records are not open in this process"))
        params = request.query_params
        by = params.get("by", "team")
        now = time.time()
        try:
            if by not in GROUPINGS:
                raise ValueError(f"by {by!r}: use one of {', '.join(GROUPINGS)}")
            since = time_bound(params.get("since", DEFAULT_SINCE), now, name="since")
            until_text = params.get("until")
            until = now if until_text is None else time_bound(until_text, now, name="until")
            if until <= since:
                raise ValueError("until must be later than since")
        except ValueError as error:
            return _status(BadRequest(str(error)))
        if self._flusher is not None:
            await self.flush()  # this process's own latest requests count too
        rows = await records.summarize(by, since, until)
        return JSONResponse(
            {
                "by": by,
                "since": _rfc3339(since),
                "until": _rfc3339(until),
                "items": [row.to_json() for row in rows],
            }
        )

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        if self.records is not None:
            try:
                await self.flush()
            except Exception:
                _log.exception("%d usage records lost at shutdown", len(self._queue))
            await self.records.close()
            self.records = None


def _status(error: ApiError) -> JSONResponse:
    return JSONResponse(error.to_status(), status_code=error.code)


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
