"""The gateway's Prometheus metrics, registered on a registry the caller owns.

Every label that a request can influence (endpoint, team, status, guardrail, budget) goes
through a ``BoundedLabel`` first, so the series count has a fixed ceiling whatever clients send.
Label children are cached per label tuple: ``labels()`` takes a lock and builds a key on every
call, and the request path records five samples per request.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from corral.observability.labels import BoundedLabel

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    """Requests, tokens, cost, budgets, guardrail events, latency and time to first chunk."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        max_label_values: int = 64,
        prefix: str = "corral",
        governance_metrics: bool = True,
    ) -> None:
        self.endpoint_label = BoundedLabel(max_label_values)
        self.team_label = BoundedLabel(max_label_values)
        self._status_label = BoundedLabel(max_label_values)
        self._guardrail_label = BoundedLabel(max_label_values)
        self._action_label = BoundedLabel(max_label_values)
        self._budget_label = BoundedLabel(max_label_values)
        by_request = ("endpoint", "team", "status")
        self.requests = Counter(
            f"{prefix}_gateway_requests",
            "Requests finished by the gateway.",
            by_request,
            registry=registry,
        )
        self.tokens = Counter(
            f"{prefix}_gateway_tokens",
            "Tokens used, by type (input or output).",
            ("endpoint", "team", "type"),
            registry=registry,
        )
        self.cost = Counter(
            f"{prefix}_gateway_cost_usd",
            "Settled cost of requests in US dollars.",
            ("endpoint", "team"),
            registry=registry,
        )
        # Off when the budget and guardrail pieces register their own series on the registry.
        self.budget_remaining: Gauge | None = None
        self.guardrail_events: Counter | None = None
        if governance_metrics:
            self.budget_remaining = Gauge(
                f"{prefix}_budget_remaining_usd",
                "What is left of a budget in its current period, in US dollars.",
                ("budget", "team"),
                registry=registry,
            )
            self.guardrail_events = Counter(
                f"{prefix}_guardrail_events",
                "Guardrail findings, by guardrail and the action taken.",
                ("endpoint", "team", "guardrail", "action"),
                registry=registry,
            )
        self.latency = Histogram(
            f"{prefix}_gateway_request_duration_seconds",
            "Time from request start to the last byte of the response.",
            by_request,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.time_to_first_chunk = Histogram(
            f"{prefix}_gateway_time_to_first_chunk_seconds",
            "Time from request start to the first response chunk of a streamed response.",
            ("endpoint", "team"),
            buckets=TTFC_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, ...], Any] = {}

    def observe_request(
        self,
        endpoint: str,
        team: str,
        status: int,
        duration_s: float,
        *,
        time_to_first_chunk_s: float | None,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
    ) -> None:
        endpoint = self.endpoint_label(endpoint)
        team = self.team_label(team)
        status_text = self._status_label(str(status))
        requests, latency = self._child(("r", endpoint, team, status_text))
        requests.inc()
        latency.observe(duration_s)
        ttfc, tokens_in, tokens_out, cost = self._child(("e", endpoint, team))
        if time_to_first_chunk_s is not None:
            ttfc.observe(time_to_first_chunk_s)
        if input_tokens:
            tokens_in.inc(input_tokens)
        if output_tokens:
            tokens_out.inc(output_tokens)
        if cost_usd:
            cost.inc(cost_usd)

    def guardrail_event(self, endpoint: str, team: str, guardrail: str, action: str) -> None:
        if self.guardrail_events is None:
            return
        self.guardrail_events.labels(
            self.endpoint_label(endpoint),
            self.team_label(team),
            self._guardrail_label(guardrail),
            self._action_label(action),
        ).inc()

    def set_budget_remaining(self, budget: str, team: str, remaining_usd: float) -> None:
        if self.budget_remaining is None:
            return
        self.budget_remaining.labels(self._budget_label(budget), self.team_label(team)).set(
            remaining_usd
        )

    def _child(self, key: tuple[str, ...]) -> Any:
        children = self._children.get(key)
        if children is None:
            children = self._make_children(key)
            self._children[key] = children
        return children

    def _make_children(self, key: tuple[str, ...]) -> tuple[Any, ...]:
        kind, endpoint, team, *rest = key
        if kind == "r":
            return (
                self.requests.labels(endpoint, team, rest[0]),
                self.latency.labels(endpoint, team, rest[0]),
            )
        return (
            self.time_to_first_chunk.labels(endpoint, team),
            self.tokens.labels(endpoint, team, "input"),
            self.tokens.labels(endpoint, team, "output"),
            self.cost.labels(endpoint, team),
        )
