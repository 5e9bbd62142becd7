"""The audit extension: the tamper-evident audit log of governance decisions and control-plane
writes (``corral.audit``), wired into a server process.

On start it opens the log's storage and its signing key:

- store on SQLite: ``STATE_DIR/audit.db`` and the platform key ``STATE_DIR/audit-signing.key``
  (Ed25519, 0600, created on first start);
- store on PostgreSQL: the store's own database, one log shared by every process on it. The
  storage serialises appends with a transaction-scoped advisory lock and reads the head inside
  that transaction, so concurrent writers in several processes extend one dense chain (seq is
  also the primary key: a fork cannot commit). Every process must sign checkpoints with a key
  the verifier knows, so the platform key lives in the store as the Secret
  ``corral-system/audit-signing-key`` (encrypted at rest with the shared secret key like every
  Secret): the first process creates it, the others read it, and all sign with one key. (So
  every process on one database must share the secret key, as Secrets already require.)

Either way the public half of the key in use is published in the log's ``audit_keys`` table,
so ``GET /corral/v1/audit/keys`` on any process lists every key that ever signed checkpoints
(a rotated key stays listed, and old checkpoints stay verifiable).

It then sets ``context.audit`` to itself. ``record(event)`` — used by the gateway stage, the
store wrapper and the other extensions — queues the event and returns (``AuditLog.submit``):
nothing on the request path waits for a commit. Events recorded before the log is open (the
key Secret's own creation) are held and submitted once it is. ``aclose`` commits what is
queued, signs a last checkpoint and closes the storage.

Records: one per gateway request that reached the audit stage (actor ``kind:id`` of the
principal, action ``invoke``, resource ``Endpoint/ns/name``, decision ``allow`` or ``deny`` by
policy, the deciding policies, the cost, and model, tokens and the final status in details; a
request the policy allowed but a later stage refused — a 429 from rate limits or budgets, a 400
from guardrails — is the same one record with that status and error code, so each request is
recorded once); and one per control-plane write (``corral.server.audit_store``).

The budget stage's bookkeeping for a request — ``budget.reserve``, ``budget.settle`` and
``budget.release`` events recorded while the request is in the audit stage — is folded into
that request's ``invoke`` record as ``details.budget`` (a list of ``{action, resource,
decision, cost, ...the event's details}``) instead of becoming records of its own: one record
per request carries the decision, deciding policies, cost, tokens and the budget hold and
settlement, and each record costs a hash, a serialisation and an insert. The audit stage
opens a collector in a context variable; ``record`` puts foldable events there while it is
open. A settle that finishes after the stage recorded the request (the client went away and
the budget stage settles in the background) finds the collector closed and is recorded on
its own, as are refusals and alerts (``budget.refuse``, ``budget.alert``,
``ratelimit.refuse``, guardrail blocks).

Checkpoint cadence: every ``CORRAL_AUDIT_CHECKPOINT_EVERY`` records (default 1000) or
``CORRAL_AUDIT_CHECKPOINT_INTERVAL`` seconds (default 60), and once more on close.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from corral.api.errors import AlreadyExists, ApiError, BadRequest, NotFound
from corral.api.objects import API_VERSION
from corral.audit import AuditEvent, AuditLog, AuditLogClosed, SigningKey, UnreadableRecord
from corral.audit.log import now_rfc3339
from corral.audit.wire import checkpoint_to_json, record_to_json
from corral.gateway import Call, GatewayError, Handler, Stage
from corral.server.audit_store import AuditingStore
from corral.server.config import is_postgres_url
from corral.server.extensions import Extension, ServerContext
from corral.store.audit_storage import (
    PostgresAuditStorage,
    SqliteAuditStorage,
    open_audit_storage,
)
from corral.store.protocol import Store

AUDIT_FILE = "audit.db"
KEY_SECRET_NAMESPACE = "corral-system"
KEY_SECRET_NAME = "audit-signing-key"
KEY_SECRET_FIELD = "privateKey"
ROUTE_PREFIX = "/corral/v1/audit"
DEFAULT_PAGE = 1000
MAX_PAGE = 5000
_EARLY_LIMIT = 10_000  # events held before the log opens; a start that never opens drops more
_ACTOR = "system:audit"
_POLICY_DENIED = "denied_by_policy"
FOLDED_ACTIONS = frozenset({"budget.reserve", "budget.settle", "budget.release"})
"""Events that become part of the request's ``invoke`` record when recorded during it."""


class _Folded:
    """The foldable events recorded while one request is in the audit stage."""

    __slots__ = ("events", "open")

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.open = True


# Set by the audit stage for the request's task (and copied into tasks it starts).
_in_flight: ContextVar[_Folded | None] = ContextVar("corral_audit_in_flight", default=None)

_log = logging.getLogger(__name__)


def _env_number(name: str, default: float, *, integer: bool) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = 0
    if value <= 0:
        kind = "a positive integer" if integer else "a positive number of seconds"
        raise ValueError(f"{name}={raw!r}: expected {kind}")
    return value


class AuditExtension(Extension):
    name = "audit"

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        self.log: AuditLog | None = None
        self.storage: SqliteAuditStorage | PostgresAuditStorage | None = None
        self.signing_key: SigningKey | None = None
        self.dropped = 0
        """Events recorded after close (or beyond the pre-start hold): not in the log."""
        self._early: list[AuditEvent] = []

    # -- AuditSink --------------------------------------------------------------------------

    def record(self, event: AuditEvent) -> None:
        """Queue ``event`` for the log; never waits (group commit happens behind). A budget
        reserve/settle/release of a request in the audit stage joins that request's record."""
        if event.action in FOLDED_ACTIONS:
            folded = _in_flight.get()
            if folded is not None and folded.open:
                folded.events.append(event)
                return
        log = self.log
        if log is None:
            if len(self._early) < _EARLY_LIMIT:
                self._early.append(event)
            else:
                self.dropped += 1
            return
        try:
            log.submit(event)
        except AuditLogClosed:
            self.dropped += 1
            _log.warning("audit log closed: %s %s %s not recorded", *_what(event))

    # -- lifecycle --------------------------------------------------------------------------

    def wrap_store(self, store: Store) -> Store:
        return AuditingStore(store, self.record)

    async def start(self) -> None:
        checkpoint_every = int(_env_number("CORRAL_AUDIT_CHECKPOINT_EVERY", 1000, integer=True))
        checkpoint_interval = _env_number("CORRAL_AUDIT_CHECKPOINT_INTERVAL", 60.0, integer=False)
        if is_postgres_url(self.context.store_url):
            self.storage = await open_audit_storage(self.context.store_url)
            self.signing_key = await shared_signing_key(self.context.store)
        else:
            path = self.context.state_dir / AUDIT_FILE
            self.storage = await open_audit_storage(f"sqlite:///{path}")
            self.signing_key = await asyncio.to_thread(
                SigningKey.load_or_create, self.context.state_dir
            )
        await self.storage.add_key(
            self.signing_key.kid, self.signing_key.public_pem().decode(), now_rfc3339()
        )
        self.log = await AuditLog.open(
            self.storage,
            self.signing_key,
            checkpoint_every=checkpoint_every,
            checkpoint_interval=checkpoint_interval,
        )
        early, self._early = self._early, []
        for event in early:
            self.log.submit(event)
        self.context.metrics.register(_AuditMetrics(self))
        self.context.audit = self

    async def aclose(self) -> None:
        log, storage = self.log, self.storage
        try:
            if log is not None:
                await log.close()
                if log.lost:
                    _log.error("audit log: %d events could not be recorded", log.lost)
        finally:
            if storage is not None:
                await storage.close()
            if self.context.audit is self:
                self.context.audit = None

    @property
    def ready(self) -> bool:
        return self.log is not None

    # -- the gateway stage ------------------------------------------------------------------

    def gateway_stages(self) -> Sequence[Stage]:
        return (self._audit_stage,)

    async def _audit_stage(self, call: Call, call_next: Handler) -> None:
        status: int | None = None
        error_code: str | None = None
        folded = _Folded()
        token = _in_flight.set(folded)
        try:
            await call_next(call)
            status = call.upstream_status
        except GatewayError as error:
            status, error_code = error.status, error.code or error.type
            raise
        except Exception:
            status, error_code = 500, "internal_error"
            raise
        finally:
            _in_flight.reset(token)
            folded.open = False
            self.record(invoke_event(call, status, error_code, folded.events))

    # -- the API ----------------------------------------------------------------------------

    def api_routes(self) -> Sequence[BaseRoute]:
        return (
            Route(f"{ROUTE_PREFIX}/records", self._records, methods=["GET"]),
            Route(f"{ROUTE_PREFIX}/checkpoints", self._checkpoints, methods=["GET"]),
            Route(f"{ROUTE_PREFIX}/keys", self._keys, methods=["GET"]),
        )

    async def _records(self, request: Request) -> JSONResponse:
        storage = self.storage
        if storage is None:
            return _status(ApiError("the audit log is not open"))
        try:
            limit = _query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
            tail = _query_int(request, "tail", 0, 0, MAX_PAGE)
            start = _query_int(request, "from", 0, 0, 2**62)
        except BadRequest as error:
            return _status(error)
        size = (await storage.head()).size
        if tail:
            start, limit = max(0, size - tail), tail
        items: list[dict[str, Any]] = []
        body: dict[str, Any] = {"items": items, "size": size}
        records = storage.records(start)
        try:
            async for record in records:
                items.append(record_to_json(record))
                if len(items) >= limit:
                    break
        except UnreadableRecord as error:
            # A row changed behind the log's back: say which, so the verifier reports it.
            body["unreadable"] = {"seq": error.seq, "reason": error.reason}
        finally:
            await records.aclose()  # type: ignore[attr-defined]
        body["next"] = items[-1]["seq"] + 1 if len(items) >= limit else None
        return JSONResponse(body)

    async def _checkpoints(self, _request: Request) -> JSONResponse:
        if self.storage is None:
            return _status(ApiError("the audit log is not open"))
        checkpoints = await self.storage.checkpoints()
        return JSONResponse({"items": [checkpoint_to_json(c) for c in checkpoints]})

    async def _keys(self, _request: Request) -> JSONResponse:
        key, storage = self.signing_key, self.storage
        if key is None or storage is None:
            return _status(ApiError("the audit log is not open"))
        keys = [
            {"kid": kid, "algorithm": "Ed25519", "publicKey": pem, "thisProcess": kid == key.kid}
            for kid, pem in await storage.public_keys()
        ]
        return JSONResponse({"keys": keys})


class _AuditMetrics(Collector):
    """``/metrics``: the writer's backlog and the events that never reached the log."""

    def __init__(self, extension: AuditExtension) -> None:
        self._extension = extension

    def collect(self) -> Iterable[Metric]:
        log = self._extension.log
        queued = GaugeMetricFamily(
            "corral_audit_queued_events", "Audit events waiting for the log's writer"
        )
        queued.add_metric([], log.queued if log is not None else 0)
        lost = CounterMetricFamily(
            "corral_audit_lost_events",
            "Audit events not recorded (their batch failed to commit, or the log was closed)",
        )
        lost.add_metric([], (log.lost if log is not None else 0) + self._extension.dropped)
        return [queued, lost]


def invoke_event(
    call: Call,
    status: int | None,
    error_code: str | None,
    budget_events: Sequence[AuditEvent] = (),
) -> AuditEvent:
    """The audit record of one gateway request, with the budget events folded into it."""
    principal, endpoint, usage = call.principal, call.endpoint, call.usage
    denied = status == 403 and error_code == _POLICY_DENIED
    model = call.payload.get("model")
    details: dict[str, Any] = {
        "model": model if isinstance(model, str) else None,
        "operation": call.operation,
        "status": status,
        "team": principal.team if principal is not None else None,
        "inputTokens": usage.input_tokens if usage is not None else None,
        "outputTokens": usage.output_tokens if usage is not None else None,
    }
    if error_code is not None:
        details["error"] = error_code
    if call.served_by is not None:
        details["servedBy"] = call.served_by
    if budget_events:
        folded: list[dict[str, Any]] = []
        for event in budget_events:
            entry = dict(event.details)
            entry.pop("endpoint", None)  # the record's own resource names it
            entry["action"] = event.action
            entry["resource"] = event.resource
            entry["decision"] = event.decision
            entry["cost"] = event.cost
            folded.append(entry)
        details["budget"] = folded
    return AuditEvent(
        actor=f"{principal.kind}:{principal.id}" if principal is not None else "anonymous",
        action="invoke",
        resource=(
            f"Endpoint/{endpoint.namespace}/{endpoint.name}"
            if endpoint is not None
            else f"Endpoint/{model if isinstance(model, str) and model else '?'}"
        ),
        decision="deny" if denied else "allow",
        policies=call.decided_by,
        cost=call.cost_usd or 0.0,
        details=details,
    )


async def shared_signing_key(store: Store) -> SigningKey:
    """The platform key every process on one database signs with: the Secret
    ``corral-system/audit-signing-key``, created by whichever process starts first."""
    where = f"Secret {KEY_SECRET_NAMESPACE}/{KEY_SECRET_NAME}"
    for _ in range(3):
        try:
            secret = await store.get("Secret", KEY_SECRET_NAMESPACE, KEY_SECRET_NAME)
        except NotFound:
            key = SigningKey.generate()
            try:
                await store.create(
                    {
                        "apiVersion": API_VERSION,
                        "kind": "Secret",
                        "metadata": {"name": KEY_SECRET_NAME, "namespace": KEY_SECRET_NAMESPACE},
                        "spec": {
                            "type": "audit-signing-key",
                            "data": {KEY_SECRET_FIELD: key.private_pem().decode()},
                        },
                    },
                    actor=_ACTOR,
                )
            except AlreadyExists:
                continue  # another process created it first: use that one
            return key
        pem = ((secret.get("spec") or {}).get("data") or {}).get(KEY_SECRET_FIELD)
        if not isinstance(pem, str):
            raise ValueError(f"{where}: spec.data.{KEY_SECRET_FIELD} is missing")
        return SigningKey.from_pem(pem.encode(), where)
    raise RuntimeError(f"{where}: created and removed again while starting; retry")


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise BadRequest(f"query parameter {name}={raw!r}: expected an integer {low}..{high}")
    return value


def _status(error: ApiError) -> JSONResponse:
    return JSONResponse(error.to_status(), status_code=error.code)


def _what(event: AuditEvent) -> tuple[str, str, str]:
    return event.actor, event.action, event.resource
