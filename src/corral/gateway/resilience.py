"""What keeps a failing upstream from hurting more than its own share: policy, budget, ejection.

``compile_policy`` turns ``spec.routing`` into the ``RoutingPolicy`` a route snapshot carries
(timeouts, retry budget, outlier detection, fallback Endpoints), validated once per compile. The
``Balancer`` owns the process-local state that outlives snapshots: one ``RetryBudget`` per
Endpoint and one ``Ejections`` for every replica address; the forwarding stage reports each
try's outcome to them.

Retry budget: over a sliding window (``windowSeconds``, in ten slots) an Endpoint may retry at
most ``ratio`` × its requests, or ``minRetriesPerSecond`` × the window when that is more, so a
failing upstream gets at most 1.2× the traffic instead of ``max_attempts``×.

Outlier ejection: a replica whose tries fail ``consecutiveFailures`` times in a row (connect
errors, timeouts, 5xx) takes no traffic for ``baseEjectionSeconds`` × the number of times it was
ejected (at most ten; remembered until it has served well for as long as it was last out), but
never more than ``maxEjectionPercent`` of a version's replicas at once; it returns on its own
when the time is up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from corral.api.kinds.endpoint import RoutingSpec

_SLOTS = 10
_MAX_EJECTION_FACTOR = 10  # the tenth ejection in a row waits as long as every later one


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    strategy: str = "least-outstanding"
    per_try_seconds: float = 120.0
    total_seconds: float = 300.0
    retry_ratio: float = 0.2
    min_retries_per_second: float = 3.0
    retry_window_seconds: float = 10.0
    consecutive_failures: int = 5
    base_ejection_seconds: float = 30.0
    max_ejection_percent: int = 50
    fallback: tuple[str, ...] = ()  # "namespace/name", resolved against the request's snapshot


def compile_policy(
    routing: Mapping[str, Any], namespace: str, where: str, itself: str = ""
) -> RoutingPolicy:
    """``spec.routing`` as a policy; raises ``ValueError`` naming the field at fault.

    Fallback names are qualified with ``namespace``; ``itself`` (the Endpoint's own
    "namespace/name") is left out of them, since the API cannot refuse it.
    """
    try:
        spec = RoutingSpec.model_validate(routing)
    except ValidationError as error:
        problems = "; ".join(
            f"spec.routing.{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            if problem["loc"]
            else f"spec.routing: {problem['msg']}"
            for problem in error.errors()
        )
        raise ValueError(f"{where}: {problems}") from None
    return RoutingPolicy(
        strategy=spec.strategy,
        per_try_seconds=spec.timeouts.perTrySeconds,
        total_seconds=spec.timeouts.totalSeconds,
        retry_ratio=spec.retryBudget.ratio,
        min_retries_per_second=spec.retryBudget.minRetriesPerSecond,
        retry_window_seconds=spec.retryBudget.windowSeconds,
        consecutive_failures=spec.outlierDetection.consecutiveFailures,
        base_ejection_seconds=spec.outlierDetection.baseEjectionSeconds,
        max_ejection_percent=spec.outlierDetection.maxEjectionPercent,
        fallback=tuple(
            qualified
            for qualified in (
                name if "/" in name else f"{namespace}/{name}" for name in spec.fallback
            )
            if qualified != itself
        ),
    )


class RetryBudget:
    """Requests and retries of one Endpoint over a sliding window of ten slots."""

    __slots__ = ("_requests", "_retries", "_slot_ids")

    def __init__(self) -> None:
        self._slot_ids = [-1] * _SLOTS
        self._requests = [0] * _SLOTS
        self._retries = [0] * _SLOTS

    def count_request(self, now: float, policy: RoutingPolicy) -> None:
        self._requests[self._slot(now, policy)] += 1

    def count_retry(self, now: float, policy: RoutingPolicy) -> None:
        self._retries[self._slot(now, policy)] += 1

    def allows_retry(self, now: float, policy: RoutingPolicy) -> bool:
        self._slot(now, policy)  # ages out slots that left the window
        current = int(now * _SLOTS / policy.retry_window_seconds)
        requests = retries = 0
        for index, slot_id in enumerate(self._slot_ids):
            if current - slot_id < _SLOTS:
                requests += self._requests[index]
                retries += self._retries[index]
        allowance = max(
            policy.retry_ratio * requests,
            policy.min_retries_per_second * policy.retry_window_seconds,
        )
        return retries + 1 <= allowance  # counting this retry, retries stay within the budget

    def _slot(self, now: float, policy: RoutingPolicy) -> int:
        slot_id = int(now * _SLOTS / policy.retry_window_seconds)
        index = slot_id % _SLOTS
        if self._slot_ids[index] != slot_id:
            self._slot_ids[index] = slot_id
            self._requests[index] = 0
            self._retries[index] = 0
        return index


class Ejections:
    """Consecutive failures and ejections per replica address, on an injectable clock."""

    __slots__ = ("_clock", "_failures", "_history", "_next_return", "ejected")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._failures: dict[str, int] = {}
        # address -> (times ejected in a row, when a success may forget them)
        self._history: dict[str, tuple[int, float]] = {}
        self.ejected: dict[str, float] = {}  # address -> when it takes traffic again
        self._next_return = math.inf  # the earliest of those times

    def routable(self, addresses: tuple[str, ...]) -> tuple[str, ...]:
        """``addresses`` without the ejected ones (all of them rather than none)."""
        ejected = self.ejected
        if self._clock() >= self._next_return:
            now = self._clock()
            for address, until in list(ejected.items()):
                if until <= now:
                    del ejected[address]
            self._next_return = min(ejected.values(), default=math.inf)
        # Most requests meet none of the ejected replicas: answer those without allocating.
        if not ejected or not any(address in ejected for address in addresses):
            return addresses
        left = tuple(address for address in addresses if address not in ejected)
        return left or addresses

    def succeeded(self, address: str) -> None:
        if address in self._failures:
            del self._failures[address]
        history = self._history.get(address)
        if history is not None and self._clock() >= history[1]:
            del self._history[address]

    def failed(self, address: str, siblings: tuple[str, ...], policy: RoutingPolicy) -> bool:
        """Count a failed try of ``address`` (one of ``siblings``); True when it was ejected."""
        failures = self._failures.get(address, 0) + 1
        self._failures[address] = failures
        if failures < policy.consecutive_failures:
            return False
        now = self._clock()
        if self.ejected.get(address, 0.0) > now:
            return False  # a try that was already under way when it was ejected
        cap = math.floor(len(siblings) * policy.max_ejection_percent / 100)
        out = sum(1 for sibling in siblings if self.ejected.get(sibling, 0.0) > now)
        if out + 1 > cap:
            return False  # keep counting: it is ejected once enough of its siblings are back
        times = self._history.get(address, (0, 0.0))[0] + 1
        duration = policy.base_ejection_seconds * min(times, _MAX_EJECTION_FACTOR)
        self.ejected[address] = now + duration
        self._next_return = min(self._next_return, now + duration)
        self._history[address] = (times, now + 2 * duration)
        del self._failures[address]
        return True
