"""The rate-limits extension: requests per minute, tokens per minute and concurrent requests per
RateLimit, shared by every gateway process of a deployment.

In a gateway process it follows RateLimit objects through an informer and compiles them into a
:class:`~corral.metering.ratelimits.RateLimitSet` snapshot, swapped whole on change; the stage
reads only the snapshot, and compiles the checks a caller's requests to an Endpoint make once
per snapshot (:class:`~corral.metering.ratelimits.CheckPlan`). A request that no RateLimit
applies to costs a dictionary lookup and no round trip; one that some apply to makes one
atomic admission round trip to the counters for all of them
(``corral.store.ratelimit_counters``), and, after the call, one more to free its concurrency
slots and correct its token charge to the real usage.

Counters live where every gateway process of the deployment meets: Redis when
``CORRAL_COUNTERS_URL=redis://…`` is set, else the store's PostgreSQL when the store is
PostgreSQL, else a SQLite file in the state dir (``ratelimits.db``) that this gateway process
owns: the counters live in its memory and the window counts are written behind to the file
once a second (``corral.store.owned_counters``); a second gateway on the state dir is refused.

A refused request gets OpenAI's rate-limit answer: 429, ``code: rate_limit_exceeded``,
``type: requests`` or ``tokens``, ``Retry-After`` in seconds and the ``x-ratelimit-*``
headers; admitted requests get the ``x-ratelimit-*`` headers of their tightest limits too.
Refusals are audited. When the counters cannot be reached the request is refused with a 503
(the limits fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import Counter

from corral.api.kinds.ratelimit import RATELIMIT
from corral.audit import AuditEvent
from corral.controlplane import Informer, InformerEvent
from corral.gateway import Call, GatewayError, Handler, Stage
from corral.metering.budgets import Subject
from corral.metering.estimate import estimate_prompt_tokens
from corral.metering.ratelimits import (
    LEASE_TTL_S,
    Admission,
    Check,
    CheckPlan,
    RateLimitRule,
    RateLimitSet,
    admission_tokens,
    refusal_message,
    retry_after_s,
    window_position,
)
from corral.server.budget_snapshot import caller_subjects
from corral.server.config import is_postgres_url
from corral.server.extensions import Extension, ServerContext
from corral.server.informer_follow import follow_informers
from corral.store.ratelimit_counters import open_ratelimit_counters

if TYPE_CHECKING:
    from corral.store.owned_counters import OwnedRateLimitCounters
    from corral.store.ratelimit_counters import (
        PostgresRateLimitCounters,
        RedisRateLimitCounters,
        SqliteRateLimitCounters,
    )

    Counters = (
        PostgresRateLimitCounters
        | RedisRateLimitCounters
        | SqliteRateLimitCounters
        | OwnedRateLimitCounters
    )

_log = logging.getLogger(__name__)

COUNTERS_URL_ENV = "CORRAL_COUNTERS_URL"
LEASE_TTL_ENV = "CORRAL_RATELIMIT_LEASE_TTL_S"
SQLITE_FILE = "ratelimits.db"
_SWEEP_EVERY_S = 60.0
_PLANS_KEPT = 4096
"""Check plans remembered per RateLimit snapshot; past that they start over (many callers)."""


def lease_ttl_s() -> float:
    """How long a concurrency slot outlives its process (``CORRAL_RATELIMIT_LEASE_TTL_S``,
    default 60); leases are renewed every quarter of it."""
    text = os.environ.get(LEASE_TTL_ENV, "").strip()
    if not text:
        return LEASE_TTL_S
    try:
        ttl = float(text)
    except ValueError:
        ttl = 0.0
    if not 1.0 <= ttl <= 86_400.0:
        raise ValueError(f"{LEASE_TTL_ENV}={text!r}: expected seconds between 1 and 86400")
    return ttl


def counters_url(context: ServerContext) -> str:
    """Where this deployment's rate-limit counters live (see the module docstring)."""
    configured = os.environ.get(COUNTERS_URL_ENV, "").strip()
    if configured:
        return configured
    if is_postgres_url(context.store_url):
        return context.store_url
    return f"sqlite:///{context.state_dir / SQLITE_FILE}"


def applicable_rules(limits: RateLimitSet, call: Call) -> tuple[RateLimitRule, ...]:
    """Every RateLimit scoped to this call's Endpoint (``model``) or its caller (team, key,
    agent), each looked up in its own namespace exactly as Budgets are
    (``corral.server.budget_snapshot.caller_subjects``)."""
    endpoint = call.endpoint
    if endpoint is None:
        return ()
    found = list(limits.applicable(Subject(endpoint.namespace, model=endpoint.name)))
    principal = call.principal
    if principal is not None:
        for subject in caller_subjects(principal):
            found.extend(limits.applicable(subject))
    if len(found) < 2:
        return tuple(found)
    unique: dict[str, RateLimitRule] = {}
    for rule in found:
        unique.setdefault(rule.ref, rule)
    return tuple(unique.values())


class RateLimitFeed:
    """Keeps ``limits`` equal to the store's RateLimits; run ``start``."""

    def __init__(self, informer: Informer) -> None:
        self.limits = RateLimitSet()
        self._informer = informer
        self._synced = False
        self._scheduled = False
        informer.add_handler(self._on_event)

    @property
    def ready(self) -> bool:
        return self._synced

    async def start(self, stop: asyncio.Event) -> None:
        await follow_informers((self._informer,), stop, self._on_synced)

    def _on_synced(self) -> None:
        self._rebuild()
        self._synced = True

    def _on_event(self, _event: InformerEvent) -> None:
        # A burst of events coalesces into one rebuild per loop iteration.
        if self._scheduled or not self._synced:
            return
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._rebuild)

    def _rebuild(self) -> None:
        self._scheduled = False
        try:
            self.limits = RateLimitSet.from_objects(self._informer.list())
        except ValueError as error:
            # The API validates specs; an object that still fails keeps the last good set.
            _log.warning("RateLimits not reloaded, the previous ones stay in force: %s", error)


class _Headers:
    """A response hook adding the ``x-ratelimit-*`` headers of the admitted request."""

    rewrites = False
    __slots__ = ("_pairs",)

    def __init__(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self._pairs = pairs

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:  # noqa: ARG002
        headers.extend(self._pairs)

    def chunk(self, data: bytes) -> bytes:
        return data

    def end(self) -> bytes:
        return b""


class RateLimitExtension(Extension):
    name = "rate-limits"

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        self.counters: Counters | None = None
        self.feed: RateLimitFeed | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: dict[str, tuple[str, ...]] = {}  # lease id -> its slot keys
        self.lease_ttl_s = LEASE_TTL_S
        # Lease ids unique across the processes sharing the counters, without a random draw
        # (a system call) per request: a random prefix per process and a sequence number.
        self._lease_prefix = secrets.token_hex(8)
        self._lease_numbers = itertools.count(1)
        # The check plan per (Endpoint, caller) under the RateLimit snapshot ``_plans_of``: a
        # request looks its plan up instead of matching rules; a new snapshot starts afresh.
        self._plans: dict[tuple[object, ...], CheckPlan | None] = {}
        self._plans_of: RateLimitSet | None = None
        self.refusals = Counter(
            "corral_ratelimit_refusals",
            "Requests refused by a RateLimit, by limit kind",
            ["limit"],
            registry=context.metrics,
        )

    async def start(self) -> None:
        if self.context.access is None:
            return  # not a gateway process: nothing to limit
        self.lease_ttl_s = lease_ttl_s()
        url = counters_url(self.context)
        # The default file in the state dir belongs to this gateway process alone.
        owned = not os.environ.get(COUNTERS_URL_ENV, "").strip() and url.startswith("sqlite:")
        self.counters = await open_ratelimit_counters(url, owned=owned)
        self.feed = RateLimitFeed(Informer(self.context.store, RATELIMIT.kind))
        stop = self.context.stop
        self._tasks = [
            asyncio.create_task(self.feed.start(stop)),
            asyncio.create_task(self._keep_leases(stop)),
        ]

    @property
    def ready(self) -> bool:
        return self.feed is None or self.feed.ready

    def gateway_stages(self) -> Sequence[Stage]:
        return (self.stage,)

    def _plan(self, limits: RateLimitSet, call: Call) -> CheckPlan | None:
        """The checks this call makes (None: no RateLimit applies), remembered per Endpoint and
        caller until ``limits`` is replaced."""
        if limits is not self._plans_of:
            self._plans, self._plans_of = {}, limits
        endpoint, principal = call.endpoint, call.principal
        if endpoint is None:
            return None
        # Everything applicable_rules reads of the call, so equal keys get equal rules.
        key: tuple[object, ...] = (
            (endpoint.namespace, endpoint.name)
            if principal is None
            else (
                endpoint.namespace,
                endpoint.name,
                principal.kind,
                principal.id,
                principal.team,
                principal.namespace,
                principal.act,
            )
        )
        try:
            return self._plans[key]
        except KeyError:
            pass
        rules = applicable_rules(limits, call)
        plan = CheckPlan(rules) if rules else None
        if len(self._plans) >= _PLANS_KEPT:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    async def stage(self, call: Call, call_next: Handler) -> None:
        feed, counters = self.feed, self.counters
        if feed is None or counters is None:
            return await call_next(call)
        limits = feed.limits
        plan = None if limits.size == 0 else self._plan(limits, call)
        if plan is None:
            return await call_next(call)
        estimated = 0
        if plan.counts_tokens:
            try:
                estimated = admission_tokens(call.payload)
            except ValueError as error:
                raise GatewayError(400, str(error)) from None
        now = time.time()
        window, weight = window_position(now)
        slot_keys = plan.slot_keys
        lease = f"{self._lease_prefix}{next(self._lease_numbers):x}" if slot_keys else ""
        try:
            answer = await counters.admit(
                plan.args(estimated),
                now=now,
                window=window,
                weight=weight,
                lease_id=lease,
                lease_expires=now + self.lease_ttl_s,
            )
        except Exception as error:
            _log.warning("rate-limit counters unavailable, refusing: %s", error)
            raise GatewayError(
                503,
                "rate limits cannot be checked right now (counters unavailable)",
                type="server_error",
                code="rate_limits_unavailable",
                headers=[(b"retry-after", b"1")],
            ) from None
        if not answer.admitted:
            admission = Admission(False, (), answer.failed, answer.current, answer.previous)
            check = plan.checks(estimated)[answer.failed]
            raise self._refuse(call, check, admission, now, weight)
        headers = plan.headers(answer.used)
        if headers:  # concurrency limits alone have no OpenAI header
            call.response_hooks.append(_Headers(headers))
        if lease:
            self._in_flight[lease] = slot_keys
        try:
            await call_next(call)
        finally:
            if lease:
                self._in_flight.pop(lease, None)
            corrections: list[tuple[str, int, int]] = []
            if estimated:
                usage = call.usage
                actual = 0
                if usage is not None:
                    prompt = usage.input_tokens
                    if prompt is None:  # output was counted: the prompt estimate stands in
                        prompt = estimate_prompt_tokens(call.payload)
                    actual = prompt + usage.output_tokens
                if actual != estimated:
                    delta = actual - estimated
                    corrections = [(key, window, delta) for key in plan.token_keys]
            if slot_keys or corrections:
                try:
                    await counters.finish(lease, slot_keys, corrections)
                except Exception as error:
                    # The leases expire by themselves; a lost correction errs one minute.
                    _log.warning("rate-limit counters not updated after a request: %s", error)

    def _refuse(
        self, call: Call, check: Check, admission: Admission, now: float, weight: float
    ) -> GatewayError:
        if check.kind == "concurrent":
            retry: int | None = 1
        else:
            retry = retry_after_s(
                admission.current, admission.previous, check.amount, check.limit, now
            )
        headers = [(b"retry-after", str(retry or 60).encode())]
        if check.kind != "concurrent":
            used = admission.current + admission.previous * weight
            suffix = check.kind.encode()
            headers += [
                (b"x-ratelimit-limit-" + suffix, str(check.limit).encode()),
                (
                    b"x-ratelimit-remaining-" + suffix,
                    str(max(0, math.floor(check.limit - used + 1e-9))).encode(),
                ),
                (b"x-ratelimit-reset-" + suffix, f"{retry or 60}s".encode()),
            ]
        self.refusals.labels(check.kind).inc()
        message = refusal_message(check, admission, weight)
        if retry is not None and check.kind != "concurrent":
            message += f" Please try again in {retry}s."
        audit = self.context.audit
        if audit is not None:
            principal, endpoint = call.principal, call.endpoint
            audit.record(
                AuditEvent(
                    actor=f"{principal.kind}:{principal.id}" if principal else "anonymous",
                    action="ratelimit.refuse",
                    resource=f"RateLimit/{check.rule.ref}",
                    decision="deny",
                    policies=(check.rule.ref,),
                    details={
                        "limit": check.kind,
                        "max": check.limit,
                        "requested": check.amount,
                        "inFlight" if check.kind == "concurrent" else "current": admission.current,
                        "endpoint": f"{endpoint.namespace}/{endpoint.name}" if endpoint else None,
                    },
                )
            )
        return GatewayError(
            429,
            message,
            type="tokens" if check.kind == "tokens" else "requests",
            code="rate_limit_exceeded",
            headers=headers,
        )

    async def _keep_leases(self, stop: asyncio.Event) -> None:
        """Renew the leases of requests in flight; now and then drop old windows and leases."""
        counters = self.counters
        assert counters is not None
        last_sweep = 0.0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.lease_ttl_s / 4)
            if stop.is_set():
                return
            now = time.time()
            try:
                leases = [(key, lease) for lease, keys in self._in_flight.items() for key in keys]
                if leases:
                    await counters.renew(leases, now + self.lease_ttl_s)
                if now - last_sweep >= _SWEEP_EVERY_S:
                    await counters.sweep(now, window_position(now)[0])
                    last_sweep = now
            except Exception as error:
                _log.warning("rate-limit leases not renewed: %s", error)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.counters is not None:
            await self.counters.close()
            self.counters = None
