"""The gateway's Prometheus metrics, registered on a registry the caller owns.

Every label that a request can influence (endpoint, team, status, guardrail, budget) goes
through a ``BoundedLabel`` first, so the series count has a fixed ceiling whatever clients send.

The per-request series (requests, tokens, cost, duration, time to first chunk) are plain
running totals kept by this class and turned into metric families only when ``/metrics`` is
scraped (a custom collector). ``prometheus_client``'s own counters and histograms take a lock
and check their state on every sample, and a request records five or six: about 3 µs on the
request path, against under 1 µs for a dict lookup and a few additions here. Recording is
meant for one thread (the gateway's event loop); a scrape may run on any thread, it reads a
snapshot of the series table.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from corral.observability.labels import BoundedLabel

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MAX_CACHED_KEYS = 4096
"""Raw (endpoint, team, status) keys remembered for the fast path; past that, each request
maps its labels again (correct, only slower), so the cache cannot grow without bound."""


class _PerEndpoint:
    """Running totals of one (endpoint, team)."""

    __slots__ = ("cost", "input_tokens", "labels", "output_tokens", "ttfc", "ttfc_sum")

    def __init__(self, labels: tuple[str, str]) -> None:
        self.labels = labels
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = 0.0
        self.ttfc = [0] * (len(TTFC_BUCKETS) + 1)  # per bucket, not cumulative; last is +Inf
        self.ttfc_sum = 0.0


class _PerStatus:
    """Running totals of one (endpoint, team, status)."""

    __slots__ = ("endpoint", "labels", "latency", "latency_sum", "requests")

    def __init__(self, labels: tuple[str, str, str], endpoint: _PerEndpoint) -> None:
        self.labels = labels
        self.endpoint = endpoint
        self.requests = 0
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0


class GatewayMetrics(Collector):
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
        self._prefix = prefix
        # Raw request labels -> their series; several raw keys may share one (``other``).
        self._by_key: dict[tuple[str, str, int], _PerStatus] = {}
        self._statuses: dict[tuple[str, str, str], _PerStatus] = {}
        self._endpoints: dict[tuple[str, str], _PerEndpoint] = {}
        registry.register(self)
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
        series = self._by_key.get((endpoint, team, status))
        if series is None:
            series = self._series(endpoint, team, status)
        series.requests += 1
        series.latency[bisect_left(LATENCY_BUCKETS, duration_s)] += 1
        series.latency_sum += duration_s
        totals = series.endpoint
        if time_to_first_chunk_s is not None:
            totals.ttfc[bisect_left(TTFC_BUCKETS, time_to_first_chunk_s)] += 1
            totals.ttfc_sum += time_to_first_chunk_s
        totals.input_tokens += input_tokens
        totals.output_tokens += output_tokens
        totals.cost += cost_usd

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

    def _series(self, endpoint: str, team: str, status: int) -> _PerStatus:
        labels = (self.endpoint_label(endpoint), self.team_label(team))
        status_labels = (*labels, self._status_label(str(status)))
        series = self._statuses.get(status_labels)
        if series is None:
            totals = self._endpoints.get(labels)
            if totals is None:
                totals = self._endpoints[labels] = _PerEndpoint(labels)
            series = self._statuses[status_labels] = _PerStatus(status_labels, totals)
        if len(self._by_key) < MAX_CACHED_KEYS:
            self._by_key[(endpoint, team, status)] = series
        return series

    # -- the collector ----------------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        return iter(self._families([], []))

    def collect(self) -> Iterator[Metric]:
        # Snapshots: a request may add a series while a scrape on another thread reads.
        return iter(self._families(list(self._statuses.values()), list(self._endpoints.values())))

    def _families(
        self, statuses: Sequence[_PerStatus], endpoints: Sequence[_PerEndpoint]
    ) -> list[Metric]:
        prefix = self._prefix
        by_request = ["endpoint", "team", "status"]
        by_endpoint = ["endpoint", "team"]
        requests = CounterMetricFamily(
            f"{prefix}_gateway_requests", "Requests finished by the gateway.", labels=by_request
        )
        latency = HistogramMetricFamily(
            f"{prefix}_gateway_request_duration_seconds",
            "Time from request start to the last byte of the response.",
            labels=by_request,
        )
        for series in statuses:
            requests.add_metric(series.labels, series.requests)
            latency.add_metric(
                series.labels, _buckets(LATENCY_BUCKETS, series.latency), series.latency_sum
            )
        tokens = CounterMetricFamily(
            f"{prefix}_gateway_tokens",
            "Tokens used, by type (input or output).",
            labels=[*by_endpoint, "type"],
        )
        cost = CounterMetricFamily(
            f"{prefix}_gateway_cost_usd",
            "Settled cost of requests in US dollars.",
            labels=by_endpoint,
        )
        ttfc = HistogramMetricFamily(
            f"{prefix}_gateway_time_to_first_chunk_seconds",
            "Time from request start to the first response chunk of a streamed response.",
            labels=by_endpoint,
        )
        for totals in endpoints:
            tokens.add_metric([*totals.labels, "input"], totals.input_tokens)
            tokens.add_metric([*totals.labels, "output"], totals.output_tokens)
            cost.add_metric(totals.labels, totals.cost)
            ttfc.add_metric(totals.labels, _buckets(TTFC_BUCKETS, totals.ttfc), totals.ttfc_sum)
        return [requests, tokens, cost, latency, ttfc]


def _buckets(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs, ending with ``+Inf``, from per-bucket counts."""
    cumulative: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        total += count
        cumulative.append(("+Inf" if bound == float("inf") else _le(bound), total))
    return cumulative


def _le(bound: float) -> str:
    # As prometheus_client writes bucket bounds: 0.005, 1.0, 120.0.
    return repr(float(bound))
