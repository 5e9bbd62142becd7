"""The gateway's budget stage: reserve a request's worst case, call on, settle what it used.

Per request, against every Budget that applies (``corral.server.budget_snapshot``; which ones,
and the prices, are worked out on a caller's first call to an Endpoint and remembered until
the snapshot or the route table is replaced):

1. **Worst case.** Prompt tokens are estimated from the body (``corral.metering.estimate``);
   output tokens are the request's ``max_completion_tokens``/``max_tokens`` (times ``n`` or
   ``best_of`` choices), or, when it sets none (or 0), :data:`DEFAULT_MAX_OUTPUT_TOKENS` or
   what the Model's ``contextLength`` leaves after the prompt, whichever is smaller. When a
   *hard* budget applies to such a request the gateway writes that cap into the request
   (``max_completion_tokens`` for a chat on an ``openai``-runtime Endpoint, ``max_tokens``
   otherwise), so the hold really bounds the reply. The price is the highest of the
   Endpoint's versions and its fallbacks (the request may land on any of them).
2. **Reserve** it (``BudgetLedger.reserve``, all budgets or none). A hard budget that cannot
   fit it refuses: 429 ``insufficient_quota``/``budget_exceeded`` naming the budget and what is
   spent, with ``Retry-After`` (seconds until the period resets, at most a day; 1 s when only
   requests in flight fill it; absent when waiting cannot help). A USD budget and an Endpoint
   whose price is unknown: a hard one refuses (403 ``budget_unpriced``, set the Model's
   ``spec.pricing``), a soft one counts no USD and logs it. Soft budgets over their limit
   raise an alert (log, audit event, ``corral_budget_alerts_total``) and the request goes on.
3. **Settle** after the inner stages returned: the real usage (``call.usage``; the prompt
   estimate when the upstream did not say its input tokens) at the price of the version that
   answered. A response relayed without any usage (non-streamed and unreadable) is charged the
   whole hold. Nothing relayed, an error answer (status >= 400) or an inner stage refusing
   releases the hold. Settling is once per reservation id in the ledger, so nothing is charged
   twice; work left when the request task is cancelled finishes in the background.

``call.cost_usd`` is set from the usage and the served version's price whenever that price is
known, whether or not a Budget applies (metering reads it).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from corral.audit import AuditEvent
from corral.gateway import Call, EndpointRoute, GatewayError, Handler, RouteTable
from corral.identity import Principal
from corral.metering import (
    Alert,
    Amount,
    BudgetLedger,
    BudgetRule,
    Price,
    Refusal,
    Reservation,
    estimate_prompt_tokens,
)
from corral.metering.budgets import CounterLine
from corral.server.budget_snapshot import BudgetSnapshot, EndpointPrices, worse
from corral.server.extensions import AuditSink

_log = logging.getLogger("corral.budgets")

DEFAULT_MAX_OUTPUT_TOKENS = 4096
"""Output tokens held for a request that sets no ``max_tokens`` (the Model's context window,
when smaller, bounds it instead)."""
MAX_RETRY_AFTER_S = 86_400
"""``Retry-After`` never says more than a day, whatever the period."""
_UNPRICED_WARNING_EVERY_S = 300.0
_KNOWN_KEPT = 4096
"""Callers (per Endpoint) and reservation line sets remembered; past that, start over."""
_SERVED_KEPT = 64
"""Replica addresses whose price is remembered per caller and Endpoint."""


class Plan(NamedTuple):
    """What a request may cost before it is sent, and the output cap to write into it."""

    prompt_tokens: int
    completion_tokens: int
    cap_field: str | None
    """The body field to set to ``cap`` (None: the request bounds its output itself)."""
    cap: int


class _LineNames(NamedTuple):
    """What the audit events and gauge refreshes of a reservation name."""

    resource: str
    """Its budgets as an audit resource (``Budget/ns/a,Budget/ns/b``)."""
    refs: tuple[str, ...]
    """The budget of each of its counter lines."""


class BudgetMetrics:
    """The Prometheus side the stage reports to (the extension backs it with a registry)."""

    def refused(self, budget: str) -> None: ...

    def alerted(self, alert: Alert) -> None: ...

    def ledger_failed(self, operation: str) -> None: ...

    def settled(self, rules: tuple[str, ...]) -> None:
        """Budgets whose counters moved; the remaining-gauges refresh off the request path."""


class _Applicable:
    """What the gate needs on every call of one caller to one Endpoint (in one route table)
    under one snapshot, worked out on the first: the Budgets that apply, whether one is hard,
    the prices that bound the hold, and the price of each replica that answered."""

    __slots__ = (
        "_candidates",
        "_served",
        "endpoint",
        "endpoint_ref",
        "hard",
        "prices",
        "rules",
        "worst",
    )

    def __init__(
        self,
        snapshot: BudgetSnapshot,
        routes: RouteTable,
        endpoint: EndpointRoute,
        principal: Principal | None,
    ) -> None:
        # Held so the id keying this entry stays the Endpoint's while the entry is kept.
        self.endpoint = endpoint
        self.endpoint_ref = f"{endpoint.namespace}/{endpoint.name}"  # what audit events name
        self.prices = prices = snapshot.prices(endpoint.namespace, endpoint.name)
        self.rules = snapshot.applicable(principal, endpoint.namespace, endpoint.name)
        self.hard = any(rule.hard for rule in self.rules)
        # The request may land on the Endpoint's versions or any of its fallbacks': the
        # highest of their prices bounds the hold.
        worst = prices.worst
        candidates = [(endpoint, prices)]
        for name in endpoint.policy.fallback:
            fallback = routes.lookup(name)
            if fallback is not None:
                fallback_prices = snapshot.prices(fallback.namespace, fallback.name)
                worst = worse(worst, fallback_prices.worst)
                candidates.append((fallback, fallback_prices))
        self.worst = worst
        self._candidates = tuple(candidates)
        self._served: dict[str, Price | None] = {}

    def served_price(self, served_by: str | None) -> Price | None:
        """The price of the version that answered (found by its replica address, also among
        the fallbacks); the Endpoint's worst price when the address is not known."""
        if served_by is None:
            return self.prices.worst
        try:
            return self._served[served_by]
        except KeyError:
            pass
        price = self.prices.worst
        for route, route_prices in self._candidates:
            version = next((v for v in route.versions if served_by in v.addresses), None)
            if version is not None:
                found = route_prices.versions.get(version.model)
                price = None if found is None else found.price
                break
        if len(self._served) < _SERVED_KEPT:
            self._served[served_by] = price
        return price


class BudgetGate:
    """The stage (call it as one) over a ledger and a snapshot source."""

    def __init__(
        self,
        ledger: BudgetLedger,
        snapshot: Callable[[], BudgetSnapshot],
        *,
        metrics: BudgetMetrics | None = None,
        audit: Callable[[], AuditSink | None] = lambda: None,
        strict_prompt: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._ledger = ledger
        self._snapshot = snapshot
        self._metrics = metrics or BudgetMetrics()
        self._audit = audit
        self._strict = strict_prompt
        self._clock = clock or (lambda: datetime.now(UTC).timestamp())
        self._background: set[asyncio.Task[None]] = set()
        self._unpriced_warned: dict[str, float] = {}
        # Per (Endpoint, caller) under the snapshot and route table ``_known_of``: a new
        # snapshot (a Budget, Model or Endpoint changed) or route table starts afresh, so
        # old route tables are not kept alive.
        self._known: dict[tuple[object, ...], _Applicable] = {}
        self._known_of: tuple[BudgetSnapshot, RouteTable] | None = None
        # A reservation's lines (by id, held) -> what its audit events and gauges name.
        self._line_names: dict[int, tuple[tuple[CounterLine, ...], _LineNames]] = {}

    async def __call__(self, call: Call, call_next: Handler) -> None:
        endpoint = call.endpoint
        if endpoint is None or not call.operation:
            await call_next(call)
            return
        found = self._applicable(call, endpoint)
        rules = found.rules
        if not rules:
            await call_next(call)
            self._cost(call, found, None)
            return
        worst = found.worst
        plan = self._plan(call, found.prices)
        hard = found.hard
        if worst is None:
            self._unpriced(call, rules, found.prices)
        hold = (
            worst.cost(plan.prompt_tokens, plan.completion_tokens)
            if worst is not None
            else Amount(plan.prompt_tokens + plan.completion_tokens, 0)
        )
        try:
            result = await self._ledger.reserve(rules, hold)
        except Exception as error:
            self._metrics.ledger_failed("reserve")
            if not hard:
                _log.warning("budget ledger unreachable, soft budgets not counted: %s", error)
                await call_next(call)
                self._cost(call, found, None)
                return
            _log.error("budget ledger unreachable, request refused: %s", error)
            raise GatewayError(
                503,
                "budgets cannot be checked right now (the budget ledger is unreachable)",
                type="service_unavailable",
                code="budget_ledger_unavailable",
                headers=[(b"retry-after", b"1")],
            ) from None
        if isinstance(result, Refusal):
            raise self._refuse(call, result)
        if hard and plan.cap_field is not None:
            call.payload = {**call.payload, plan.cap_field: plan.cap}
            call.body = orjson.dumps(call.payload)
        names = self._names(result.lines)
        self._reserved(call, result, names, found.endpoint_ref)
        try:
            await call_next(call)
        except BaseException:
            self._in_background(self._finish(call, result, plan, found, names))
            raise
        await self._finish(call, result, plan, found, names)

    async def aclose(self) -> None:
        """Wait for settles and releases still running in the background."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # --- before the call -------------------------------------------------------------------

    def _applicable(self, call: Call, endpoint: EndpointRoute) -> _Applicable:
        snapshot, routes, principal = self._snapshot(), call.routes, call.principal
        known_of = self._known_of
        if known_of is None or snapshot is not known_of[0] or routes is not known_of[1]:
            self._known, self._known_of = {}, (snapshot, routes)
        # The Endpoint by identity (the entry holds it); of the caller, everything
        # ``caller_subjects`` reads.
        key: tuple[object, ...] = (
            (id(endpoint),)
            if principal is None
            else (
                id(endpoint),
                principal.kind,
                principal.id,
                principal.team,
                principal.namespace,
                principal.act,
            )
        )
        found = self._known.get(key)
        if found is None:
            found = _Applicable(snapshot, routes, endpoint, principal)
            if len(self._known) >= _KNOWN_KEPT:
                self._known.clear()  # many callers: start over
            self._known[key] = found
        return found

    def _plan(self, call: Call, prices: EndpointPrices) -> Plan:
        payload = call.payload
        try:
            prompt = estimate_prompt_tokens(payload, strict=self._strict)
        except ValueError as error:
            raise GatewayError(400, str(error), code="invalid_request") from None
        if call.operation == "embeddings":
            return Plan(prompt, 0, None, 0)
        choices = _choices(payload)
        requested_field = None
        for field_name in ("max_completion_tokens", "max_tokens"):
            value = payload.get(field_name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise GatewayError(
                    400,
                    f"request body: {field_name!r} must be a non-negative integer",
                    code="invalid_request",
                    param=field_name,
                )
            if value > 0:
                return Plan(prompt, value * choices, None, value)
            requested_field = field_name  # 0: llama.cpp reads it as "no limit"
        cap = DEFAULT_MAX_OUTPUT_TOKENS
        if prices.context_length is not None:
            cap = min(cap, max(prices.context_length - prompt, 1))
        if requested_field is None:
            chat_on_openai = call.operation == "chat" and prices.runtime == "openai"
            requested_field = "max_completion_tokens" if chat_on_openai else "max_tokens"
        return Plan(prompt, cap * choices, requested_field, cap)

    def _unpriced(self, call: Call, rules: tuple[BudgetRule, ...], prices: EndpointPrices) -> None:
        endpoint = call.endpoint
        where = "?" if endpoint is None else endpoint.public_name
        unpriced = [rule for rule in rules if rule.micro_usd_limit is not None]
        hard = [rule for rule in unpriced if rule.hard]
        if hard:
            budget = hard[0].ref
            message = (
                f"budget {budget} limits USD but Endpoint {where!r} has no known price: set "
                "spec.pricing on its Models (0 for free) to call it under this budget"
            )
            self._record(call, "budget.refuse", _resource(budget), "deny", 0.0, {"reason": message})
            self._metrics.refused(budget)
            raise GatewayError(403, message, type="insufficient_quota", code="budget_unpriced")
        now = self._clock()
        for rule in unpriced:
            last = self._unpriced_warned.get(rule.ref + where, -math.inf)
            if now - last >= _UNPRICED_WARNING_EVERY_S:
                self._unpriced_warned[rule.ref + where] = now
                _log.warning(
                    "soft budget %s limits USD but Endpoint %r (%s runtime) has no known price: "
                    "its calls count tokens only",
                    rule.ref,
                    where,
                    prices.runtime,
                )

    def _refuse(self, call: Call, refusal: Refusal) -> GatewayError:
        message = refusal.reason
        headers: list[tuple[bytes, bytes]] = []
        if refusal.retry_after is not None:
            wait = min(max(math.ceil(refusal.retry_after), 1), MAX_RETRY_AFTER_S)
            headers.append((b"retry-after", str(wait).encode()))
            if refusal.retry_after > 1:
                reset = datetime.fromtimestamp(self._clock() + refusal.retry_after, UTC)
                message += f"; the budget resets at {reset:%Y-%m-%dT%H:%M:%SZ}"
        else:
            message += "; waiting will not help: lower max_tokens or raise the budget"
        self._metrics.refused(refusal.budget)
        self._record(
            call,
            "budget.refuse",
            _resource(refusal.budget),
            "deny",
            0.0,
            {"reason": refusal.reason},
        )
        _log.info("request refused by budget %s: %s", refusal.budget, refusal.reason)
        return GatewayError(
            429, message, type="insufficient_quota", code="budget_exceeded", headers=headers
        )

    def _reserved(
        self, call: Call, reservation: Reservation, names: _LineNames, endpoint_ref: str
    ) -> None:
        for alert in reservation.alerts:
            self._alert(call, alert)
        amount = reservation.amount
        self._record(
            call,
            "budget.reserve",
            names.resource,
            "held",
            amount.usd,
            {
                "reservation": reservation.id,
                "tokens": amount.tokens,
                "micro_usd": amount.micro_usd,
                "endpoint": endpoint_ref,
            },
        )

    def _names(self, lines: tuple[CounterLine, ...]) -> _LineNames:
        """What the audit events and gauges of a reservation with these lines name."""
        cached = self._line_names.get(id(lines))
        if cached is not None and cached[0] is lines:
            return cached[1]
        budgets = ",".join(sorted({line.budget.ref for line in lines}))
        names = _LineNames(_resource(budgets), tuple(line.budget.ref for line in lines))
        if len(self._line_names) >= _KNOWN_KEPT:
            self._line_names.clear()
        self._line_names[id(lines)] = (lines, names)
        return names

    # --- after the call --------------------------------------------------------------------

    async def _finish(
        self,
        call: Call,
        reservation: Reservation,
        plan: Plan,
        found: _Applicable,
        names: _LineNames,
    ) -> None:
        usage = call.usage
        status = call.upstream_status
        try:
            if status is None or status >= 400:
                # Nothing reached the client, or an error answer: a failed call costs nothing.
                released = await self._ledger.release(reservation)
                self._record(
                    call,
                    "budget.release",
                    names.resource,
                    "released" if released else "already-finished",
                    0.0,
                    {
                        "reservation": reservation.id,
                        "status": status,
                        "endpoint": found.endpoint_ref,
                    },
                )
                return
            if usage is None:
                actual = reservation.amount  # answered, usage unreadable: charge the hold
            else:
                actual = self._cost(call, found, plan.prompt_tokens) or reservation.amount
            settlement = await self._ledger.settle(reservation, actual)
        except Exception as error:
            self._metrics.ledger_failed("settle")
            _log.error(
                "budget reservation %s not settled (its hold expires with the TTL): %s",
                reservation.id,
                error,
            )
            return
        for alert in settlement.alerts:
            self._alert(call, alert)
        if settlement.late:
            _log.warning(
                "budget reservation %s settled after its hold expired: the request outlasted "
                "the hold TTL (CORRAL_BUDGET_HOLD_TTL_S)",
                reservation.id,
            )
        self._metrics.settled(names.refs)
        held = reservation.amount
        self._record(
            call,
            "budget.settle",
            names.resource,
            "charged" if settlement.charged else "already-finished",
            actual.usd,
            {
                "reservation": reservation.id,
                "tokens": actual.tokens,
                "micro_usd": actual.micro_usd,
                "held_tokens": held.tokens,
                "held_micro_usd": held.micro_usd,
                "late": settlement.late,
                "endpoint": found.endpoint_ref,
            },
        )

    def _cost(self, call: Call, found: _Applicable, prompt_estimate: int | None) -> Amount | None:
        """Set ``call.cost_usd`` from the usage; the amount to charge (None: usage unknown)."""
        usage = call.usage
        if usage is None:
            return None
        input_tokens = usage.input_tokens
        if input_tokens is None:
            if prompt_estimate is None:
                try:
                    prompt_estimate = estimate_prompt_tokens(call.payload, strict=self._strict)
                except ValueError:
                    prompt_estimate = 0
            input_tokens = prompt_estimate
        output_tokens = usage.output_tokens
        price = found.served_price(call.served_by)
        if price is None:
            return Amount(input_tokens + output_tokens, 0)
        call.cost_usd = (
            input_tokens * price.input_per_million + output_tokens * price.output_per_million
        ) / 1_000_000
        return price.cost(input_tokens, output_tokens)

    # --- reporting -------------------------------------------------------------------------

    def _alert(self, call: Call, alert: Alert) -> None:
        _log.warning("%s", alert.message)
        self._metrics.alerted(alert)
        self._record(
            call,
            "budget.alert",
            _resource(alert.budget),
            alert.kind,
            0.0,
            {
                "unit": alert.unit,
                "limit": alert.limit,
                "used": alert.used,
                "message": alert.message,
            },
        )

    def _record(
        self,
        call: Call,
        action: str,
        resource: str,
        decision: str,
        cost: float,
        details: dict[str, Any],
    ) -> None:
        """Audit an event; ``details`` (a dict of the caller's own) gets the Endpoint added
        unless it names it already (``endpoint``, as ``namespace/name``)."""
        sink = self._audit()
        if sink is None:
            return
        principal = call.principal
        if "endpoint" not in details:
            endpoint = call.endpoint
            details["endpoint"] = (
                None if endpoint is None else f"{endpoint.namespace}/{endpoint.name}"
            )
        try:
            sink.record(
                AuditEvent(
                    actor=principal.id if principal is not None else "anonymous",
                    action=action,
                    resource=resource,
                    decision=decision,
                    policies=call.decided_by,
                    cost=cost,
                    details=details,
                )
            )
        except Exception:
            _log.exception("audit event %s for %s not recorded", action, resource)

    def _in_background(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _choices(payload: Mapping[str, Any]) -> int:
    """How many replies the request generates (``n``, or ``best_of`` candidates)."""
    most = 1
    for field_name in ("n", "best_of"):
        value = payload.get(field_name)
        if isinstance(value, int) and not isinstance(value, bool) and value > most:
            most = value
    return most


def _resource(budgets: str) -> str:
    """The audit resource of budgets joined by commas: ``Budget/ns/a,Budget/ns/b``."""
    return ",".join(f"Budget/{ref}" for ref in budgets.split(","))
