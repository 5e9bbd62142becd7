"""Prometheus metrics of the controller runtime, registered once per registry.

Tests pass their own :class:`prometheus_client.CollectorRegistry` so they read exact values;
production uses the process-wide default registry. Several managers in one process (tests,
``corral up``) share the collectors of the registry they were given instead of colliding.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, ControlPlaneMetrics] = (
    weakref.WeakKeyDictionary()
)

# Reconciles range from sub-millisecond cache hits to multi-second model downloads.
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass(frozen=True)
class ControlPlaneMetrics:
    reconcile_total: Counter
    """By ``controller`` and ``result``: success, requeue_after, error, terminal_error."""
    reconcile_duration: Histogram
    queue_depth: Gauge
    """Keys waiting to be reconciled (not counting delayed retries), by queue ``name``."""
    queue_retries: Counter
    active_workers: Gauge
    leader: Gauge
    """1 while this process holds the ``lease``, else 0."""
    garbage_collected: Counter


def metrics_for(registry: CollectorRegistry | None) -> ControlPlaneMetrics:
    """The collectors registered on ``registry`` (the default registry when None)."""
    target = REGISTRY if registry is None else registry
    existing = _BY_REGISTRY.get(target)
    if existing is not None:
        return existing
    created = ControlPlaneMetrics(
        reconcile_total=Counter(
            "corral_controller_reconcile",
            "Reconciles by controller and result.",
            ["controller", "result"],
            registry=target,
        ),
        reconcile_duration=Histogram(
            "corral_controller_reconcile_duration_seconds",
            "Time spent in one reconcile.",
            ["controller"],
            buckets=_DURATION_BUCKETS,
            registry=target,
        ),
        queue_depth=Gauge(
            "corral_workqueue_depth",
            "Keys waiting in the workqueue.",
            ["name"],
            registry=target,
        ),
        queue_retries=Counter(
            "corral_workqueue_retries",
            "Keys re-added after a failed reconcile.",
            ["name"],
            registry=target,
        ),
        active_workers=Gauge(
            "corral_controller_active_workers",
            "Workers currently running a reconcile.",
            ["controller"],
            registry=target,
        ),
        leader=Gauge(
            "corral_leader_election_leading",
            "1 while this process holds the lease.",
            ["lease"],
            registry=target,
        ),
        garbage_collected=Counter(
            "corral_garbage_collected_objects",
            "Objects deleted because every owner was gone, by kind.",
            ["kind"],
            registry=target,
        ),
    )
    _BY_REGISTRY[target] = created
    return created
