"""The budgets extension: hard and soft Budgets, enforced on every gateway process.

In a process with the gateway role it opens the budget counters (``corral.store.budget_ledger``):

- ``CORRAL_COUNTERS_URL`` when set (``redis://host:6379/0``; a ``postgresql://`` or
  ``sqlite:///`` URL works too), so several gateways share one Redis;
- else the store's PostgreSQL database when the store is PostgreSQL (every gateway process on
  that store shares the counters);
- else ``STATE_DIR/budgets.db`` (SQLite, one process), which the gateway process *owns*: it
  keeps the counters in memory and group-commits what was spent to the file
  (``corral.store.owned_counters``); a second gateway process on the same state dir is refused.

A process with the API server role opens them too, to answer ``GET /corral/v1/budgets``
(behind the admin token): every Budget with its limits, what is spent and held in its current
period, what remains and when the period resets (``?namespace=`` narrows it).

It keeps its own informers on Budgets, Models and Endpoints and compiles them into the
snapshot the stage reads (``corral.server.budget_snapshot``), puts the budget stage
(``corral.server.budget_stage``) into the gateway, sweeps the holds of crashed processes on a
timer, and exports ``corral_budget_remaining{budget,unit}``, ``corral_budget_refusals_total``,
``corral_budget_alerts_total`` and ``corral_budget_ledger_errors_total`` on ``/metrics``. It is
ready once the informers have synced and the first snapshot is built.

Tuning (environment): ``CORRAL_BUDGET_HOLD_TTL_S`` (default 900: a hold nobody settles is
returned after that; it must outlast the longest request), ``CORRAL_BUDGET_PROMPT_ESTIMATE``
(``chars``, the default, 4 characters a token; ``bytes``: UTF-8 bytes, a true upper bound).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import Counter, Gauge
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from corral.api.kinds.budget import BUDGET
from corral.api.kinds.endpoint import ENDPOINT
from corral.api.kinds.model import MODEL
from corral.controlplane import Informer, InformerEvent
from corral.gateway import Stage
from corral.metering import Alert, BudgetLedger, CounterBackend, period_window
from corral.observability import BoundedLabel
from corral.server.budget_snapshot import BudgetSnapshot, compile_snapshot
from corral.server.budget_stage import BudgetGate, BudgetMetrics
from corral.server.config import APISERVER, GATEWAY, is_postgres_url, redact_url
from corral.server.extensions import Extension, ServerContext
from corral.server.informer_follow import follow_informers
from corral.store.budget_ledger import SqliteBudgetCounters, open_budget_counters
from corral.store.counter_backends import counter_backend

_log = logging.getLogger("corral.budgets")

COUNTERS_URL_ENV = "CORRAL_COUNTERS_URL"
HOLD_TTL_ENV = "CORRAL_BUDGET_HOLD_TTL_S"
PROMPT_ESTIMATE_ENV = "CORRAL_BUDGET_PROMPT_ESTIMATE"
DEFAULT_HOLD_TTL_S = 900.0
SWEEP_INTERVAL_S = 15.0
"""How often abandoned holds are returned and every budget's remaining-gauge re-read."""
GAUGE_REFRESH_MIN_S = 0.5
"""Settles mark budgets for a gauge refresh; refreshes run at most this often."""
MAX_BUDGET_LABELS = 500
SQLITE_FILE = "budgets.db"
BUDGETS_PATH = "/corral/v1/budgets"


def counters_url(context: ServerContext) -> str:
    """Where this process's budget counters live (see the module docstring)."""
    configured = os.environ.get(COUNTERS_URL_ENV, "").strip()
    if configured:
        return configured
    if is_postgres_url(context.store_url):
        parts = urlsplit(context.store_url)
        # asyncpg takes postgresql:// only: drop a SQLAlchemy-style "+driver".
        return urlunsplit(parts._replace(scheme="postgresql"))
    return f"sqlite:///{(context.state_dir / SQLITE_FILE).resolve()}"


def _hold_ttl() -> float:
    raw = os.environ.get(HOLD_TTL_ENV, "").strip()
    if not raw:
        return DEFAULT_HOLD_TTL_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{HOLD_TTL_ENV}={raw!r}: expected a number of seconds > 0")
    return value


def _strict_prompt() -> bool:
    raw = os.environ.get(PROMPT_ESTIMATE_ENV, "chars").strip().lower() or "chars"
    if raw not in ("chars", "bytes"):
        raise ValueError(f"{PROMPT_ESTIMATE_ENV}={raw!r}: expected chars or bytes")
    return raw == "bytes"


class _PrometheusBudgets(BudgetMetrics):
    def __init__(self, extension: BudgetExtension) -> None:
        registry = extension.context.metrics
        self._extension = extension
        self._label = BoundedLabel(MAX_BUDGET_LABELS)
        self.remaining = Gauge(
            "corral_budget_remaining",
            "What a Budget has left in its current period (tokens, or USD)",
            ["budget", "unit"],
            registry=registry,
        )
        self.refusals = Counter(
            "corral_budget_refusals_total",
            "Requests a hard Budget refused",
            ["budget"],
            registry=registry,
        )
        self.alerts = Counter(
            "corral_budget_alerts_total",
            "Soft Budget alerts (kind projected at reserve, exceeded at settle)",
            ["budget", "kind"],
            registry=registry,
        )
        self.errors = Counter(
            "corral_budget_ledger_errors_total",
            "Budget ledger operations that failed (reserve, settle, sweep)",
            ["operation"],
            registry=registry,
        )

    def label(self, budget: str) -> str:
        return self._label(budget)

    def refused(self, budget: str) -> None:
        self.refusals.labels(self._label(budget)).inc()

    def alerted(self, alert: Alert) -> None:
        self.alerts.labels(self._label(alert.budget), alert.kind).inc()

    def ledger_failed(self, operation: str) -> None:
        self.errors.labels(operation).inc()

    def settled(self, rules: tuple[str, ...]) -> None:
        self._extension.refresh_gauges(rules)


class BudgetExtension(Extension):
    name = "budgets"

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        self._gateway = GATEWAY in context.config.roles
        self._active = self._gateway or APISERVER in context.config.roles
        self.snapshot = BudgetSnapshot()
        self._counters: CounterBackend | None = None
        self.ledger: BudgetLedger | None = None
        self._gate: BudgetGate | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._informers: dict[str, Informer] = {}
        self._synced = False
        self._rebuild_scheduled = False
        self.rebuilds = 0
        self._dirty_gauges: set[str] = set()
        self._gauges_wanted = asyncio.Event()
        self._metrics: _PrometheusBudgets | None = None

    @property
    def ready(self) -> bool:
        return not self._active or (self._synced and self.rebuilds > 0)

    async def start(self) -> None:
        if not self._active:
            return
        ttl, strict = _hold_ttl(), _strict_prompt()
        url = counters_url(self.context)
        default_file = not os.environ.get(COUNTERS_URL_ENV, "").strip() and url.startswith(
            "sqlite:"
        )
        try:
            if default_file and not self._gateway:
                # The gateway process owns the file; this one only reads what was spent.
                where = counter_backend(url, "budget")[1]
                self._counters = SqliteBudgetCounters(where, lock=False)
            else:
                self._counters = await open_budget_counters(url, owned=default_file)
        except Exception as error:
            shown = redact_url(url)
            raise ValueError(
                f"cannot open the budget counters at {shown}: {str(error).replace(url, shown)}"
            ) from None
        _log.info("budget counters at %s", redact_url(url))
        self.ledger = BudgetLedger(self._counters, hold_ttl_s=ttl)
        self._metrics = _PrometheusBudgets(self)
        if self._gateway:
            self._gate = BudgetGate(
                self.ledger,
                lambda: self.snapshot,
                metrics=self._metrics,
                audit=lambda: self.context.audit,
                strict_prompt=strict,
            )
        store = self.context.store
        self._informers = {
            kind: Informer(store, kind) for kind in (BUDGET.kind, MODEL.kind, ENDPOINT.kind)
        }
        for informer in self._informers.values():
            informer.add_handler(self._on_event)
        informers = tuple(self._informers.values())
        self._tasks = [
            asyncio.create_task(follow_informers(informers, self.context.stop, self._on_synced)),
            asyncio.create_task(self._sweep_forever()),
            asyncio.create_task(self._refresh_gauges_forever()),
        ]

    def gateway_stages(self) -> Sequence[Stage]:
        return () if self._gate is None else (self._gate,)

    def api_routes(self) -> Sequence[BaseRoute]:
        return [Route(BUDGETS_PATH, self._budgets, methods=["GET"])] if self._active else []

    async def _budgets(self, request: Request) -> JSONResponse:
        ledger = self.ledger
        if ledger is None or not self.ready:
            return _unavailable("the budgets are not loaded yet")
        namespace = request.query_params.get("namespace")
        now = datetime.now(UTC)
        items = []
        try:
            for rule in self.snapshot.rules:
                if namespace is not None and rule.namespace != namespace:
                    continue
                usage = await ledger.usage(rule)
                label, resets = period_window(rule.period, now)
                item: dict[str, object] = {
                    "namespace": rule.namespace,
                    "name": rule.name,
                    "scope": {"kind": rule.scope_kind, "name": rule.scope_name},
                    "period": rule.period,
                    "mode": "hard" if rule.hard else "soft",
                    "window": label,
                    "resetsAt": None if resets is None else f"{resets:%Y-%m-%dT%H:%M:%SZ}",
                }
                for unit, limit in (("tokens", rule.token_limit), ("usd", rule.micro_usd_limit)):
                    if limit is None:
                        item[unit] = None
                        continue
                    spent, held = usage[unit]
                    item[unit] = _shown(unit, limit, spent, held)
                items.append(item)
        except Exception as error:
            _log.warning("budget usage not read: %s", error)
            return _unavailable(f"the budget counters cannot be read: {error}")
        return JSONResponse({"items": items})

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._gate is not None:
            await self._gate.aclose()
        if self._counters is not None:
            counters, self._counters = self._counters, None
            await counters.close()

    # --- the snapshot ----------------------------------------------------------------------

    def _on_synced(self) -> None:
        self._synced = True
        self._schedule_rebuild()

    def _on_event(self, _event: InformerEvent) -> None:
        self._schedule_rebuild()

    def _schedule_rebuild(self) -> None:
        if self._rebuild_scheduled or not self._synced:
            return
        self._rebuild_scheduled = True
        asyncio.get_running_loop().call_soon(self._rebuild)

    def _rebuild(self) -> None:
        self._rebuild_scheduled = False
        self.snapshot = compile_snapshot(
            self._informers[BUDGET.kind].list(),
            self._informers[MODEL.kind].list(),
            self._informers[ENDPOINT.kind].list(),
        )
        self.rebuilds += 1
        self.refresh_gauges(tuple(rule.ref for rule in self.snapshot.rules))

    # --- background work -------------------------------------------------------------------

    def refresh_gauges(self, budgets: tuple[str, ...]) -> None:
        """Re-read these budgets' counters for ``corral_budget_remaining`` soon."""
        self._dirty_gauges.update(budgets)
        self._gauges_wanted.set()

    async def _refresh_gauges_forever(self) -> None:
        while True:
            await self._gauges_wanted.wait()
            self._gauges_wanted.clear()
            dirty, self._dirty_gauges = self._dirty_gauges, set()
            try:
                await self._refresh(dirty)
            except Exception as error:
                _log.warning("budget gauges not refreshed: %s", error)
            await asyncio.sleep(GAUGE_REFRESH_MIN_S)

    async def _refresh(self, budgets: set[str]) -> None:
        ledger, metrics = self.ledger, self._metrics
        if ledger is None or metrics is None:
            return
        for rule in self.snapshot.rules:
            if rule.ref not in budgets:
                continue
            label = metrics.label(rule.ref)
            for unit, (spent, _held) in (await ledger.usage(rule)).items():
                limit = rule.token_limit if unit == "tokens" else rule.micro_usd_limit
                left = max((limit or 0) - spent, 0)
                value = float(left) if unit == "tokens" else left / 1_000_000
                metrics.remaining.labels(label, unit).set(value)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            ledger = self.ledger
            if ledger is None:
                continue
            try:
                expired = await ledger.sweep_expired()
            except Exception as error:
                if self._metrics is not None:
                    self._metrics.ledger_failed("sweep")
                _log.warning("expired budget holds not swept: %s", error)
                continue
            if expired:
                _log.warning("returned the holds of %d abandoned budget reservations", expired)
            self.refresh_gauges(tuple(rule.ref for rule in self.snapshot.rules))


def _shown(unit: str, limit: int, spent: int, held: int) -> dict[str, float | int]:
    """One unit's counters as the route shows them: tokens as integers, USD in dollars."""
    values = {"limit": limit, "spent": spent, "held": held, "remaining": max(limit - spent, 0)}
    if unit == "tokens":
        return dict(values)
    return {name: value / 1_000_000 for name, value in values.items()}


def _unavailable(message: str) -> JSONResponse:
    status: dict[str, object] = {"kind": "Status", "apiVersion": "v1", "status": "Failure"}
    status.update({"reason": "ServiceUnavailable", "code": 503, "message": message})
    return JSONResponse(status, status_code=503, headers={"retry-after": "1"})
