"""Rate-limit rules compiled from RateLimit objects, and the arithmetic of their windows.

The gateway builds a :class:`RateLimitSet` from the store's watch and swaps it in whole; the
request path asks it ``applicable(subject)`` (dictionary lookups), turns the rules that apply
into :class:`Check` s with :func:`plan_checks`, and hands them to a counter backend
(``corral.store.ratelimit_counters``) that checks and counts all of them atomically, in one
round trip.

Requests and tokens per minute use a **sliding window approximated from two fixed windows**
(the scheme Cloudflare and nginx-style limiters use): minutes are fixed 60-second windows
aligned to the Unix epoch, and the count at time ``t`` is
``current + previous * (1 - elapsed fraction of the current minute)``. It never admits more
than the limit inside one fixed minute, smooths the burst a pure fixed window allows at a
minute boundary, and costs two counters per limit. Concurrency is a set of leases, one per
request in flight, each with an expiry the owning process renews while the request runs: a
process that dies stops renewing, and its slots free themselves after :data:`LEASE_TTL_S`.

Token limits charge a request its estimate when admitted (prompt estimate + ``max_tokens`` or
``max_completion_tokens``; the prompt alone when neither is set) and are corrected to the
real usage after the call, in the window that was charged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from corral.api.kinds.ratelimit import RateLimitSpec
from corral.api.objects import Object
from corral.metering.budgets import ScopeKind, Subject, parse_spec
from corral.metering.estimate import estimate_prompt_tokens

WINDOW_S = 60
"""A rate window: requests and tokens are limited per minute."""
LEASE_TTL_S = 60.0
"""A concurrency slot held by a process that stopped renewing it frees itself after this
(the default; processes renew their leases every quarter of it)."""

LimitKind = Literal["requests", "tokens", "concurrent"]


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    namespace: str
    name: str
    scope_kind: ScopeKind
    scope_name: str
    requests_per_minute: int | None
    tokens_per_minute: int | None
    concurrent_requests: int | None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_spec(cls, namespace: str, name: str, spec: RateLimitSpec) -> RateLimitRule:
        return cls(
            namespace=namespace,
            name=name,
            scope_kind=spec.scope.kind,
            scope_name=spec.scope.name,
            requests_per_minute=spec.requestsPerMinute,
            tokens_per_minute=spec.tokensPerMinute,
            concurrent_requests=spec.concurrentRequests,
        )

    @classmethod
    def from_object(cls, obj: Object) -> RateLimitRule:
        """The rule a stored RateLimit declares; ValueError names the object and the field."""
        namespace, name, spec = parse_spec(obj, "RateLimit", RateLimitSpec)
        return cls.from_spec(namespace, name, spec)


class RateLimitSet:
    """An immutable snapshot of every RateLimit, indexed by what it is scoped to."""

    def __init__(self, rules: Iterable[RateLimitRule] = ()) -> None:
        index: dict[tuple[str, str, str], list[RateLimitRule]] = {}
        count = 0
        for rule in rules:
            index.setdefault((rule.namespace, rule.scope_kind, rule.scope_name), []).append(rule)
            count += 1
        self._index = {scope: tuple(found) for scope, found in index.items()}
        self.size = count

    @classmethod
    def from_objects(cls, objects: Iterable[Object]) -> RateLimitSet:
        return cls(RateLimitRule.from_object(obj) for obj in objects)

    def applicable(self, subject: Subject) -> tuple[RateLimitRule, ...]:
        """Every RateLimit in the subject's namespace scoped to its team, key, model or agent."""
        if not self._index:
            return ()
        found: list[RateLimitRule] = []
        scopes: tuple[tuple[ScopeKind, str | None], ...] = (
            ("team", subject.team),
            ("apikey", subject.apikey),
            ("model", subject.model),
            ("agent", subject.agent),
        )
        for kind, name in scopes:
            if name is not None:
                found.extend(self._index.get((subject.namespace, kind, name), ()))
        return tuple(found)


@dataclass(frozen=True, slots=True)
class Check:
    """One limit a request must fit under. ``key`` names the counter every process shares."""

    key: str
    kind: LimitKind
    limit: int
    amount: int
    rule: RateLimitRule

    @property
    def windowed(self) -> bool:
        return self.kind != "concurrent"


def plan_checks(rules: Iterable[RateLimitRule], estimated_tokens: int) -> tuple[Check, ...]:
    """The checks a request makes against ``rules``, in a stable order (by counter key)."""
    checks: list[Check] = []
    for rule in rules:
        base = f"{rule.namespace}/{rule.name}"
        if rule.requests_per_minute is not None:
            checks.append(Check(f"{base}/rpm", "requests", rule.requests_per_minute, 1, rule))
        if rule.tokens_per_minute is not None:
            checks.append(
                Check(f"{base}/tpm", "tokens", rule.tokens_per_minute, estimated_tokens, rule)
            )
        if rule.concurrent_requests is not None:
            checks.append(
                Check(f"{base}/concurrent", "concurrent", rule.concurrent_requests, 1, rule)
            )
    checks.sort(key=lambda check: check.key)
    return tuple(checks)


class CheckPlan:
    """The checks of one set of rules, compiled once and reused by every request they apply to
    (the gateway keeps one per caller and Endpoint until the RateLimits change): a request
    only fills in its token estimate, and its answer's counts turn into headers without
    building a :class:`Check` each."""

    __slots__ = (
        "_args",
        "_headers",
        "_token_positions",
        "counts_tokens",
        "rules",
        "slot_keys",
        "token_keys",
    )

    def __init__(self, rules: tuple[RateLimitRule, ...]) -> None:
        self.rules = rules
        checks = plan_checks(rules, 0)
        self._args = tuple((c.key, c.windowed, c.limit, c.amount) for c in checks)
        self._token_positions = tuple(i for i, c in enumerate(checks) if c.kind == "tokens")
        self.counts_tokens = bool(self._token_positions)
        self.slot_keys = tuple(c.key for c in checks if not c.windowed)
        self.token_keys = tuple(c.key for c in checks if c.kind == "tokens")
        # Per header kind: its two header names and (position, limit, limit as bytes) of
        # every check of that kind, in check order (the first of equally tight ones wins).
        headers: list[tuple[bytes, bytes, tuple[tuple[int, int, bytes], ...]]] = []
        for kind in ("requests", "tokens"):
            members = tuple(
                (i, c.limit, str(c.limit).encode()) for i, c in enumerate(checks) if c.kind == kind
            )
            if members:
                suffix = kind.encode()
                headers.append(
                    (b"x-ratelimit-limit-" + suffix, b"x-ratelimit-remaining-" + suffix, members)
                )
        self._headers = tuple(headers)

    def checks(self, estimated_tokens: int) -> tuple[Check, ...]:
        """The request's checks (what :func:`plan_checks` gives), in the order of ``args``."""
        return plan_checks(self.rules, estimated_tokens)

    def args(self, estimated_tokens: int) -> list[tuple[str, bool, int, int]]:
        """``(key, windowed, limit, amount)`` per check, as the counter backends take them."""
        args = list(self._args)
        for position in self._token_positions:
            key, windowed, limit, _amount = args[position]
            args[position] = (key, windowed, limit, estimated_tokens)
        return args

    def headers(self, used: Sequence[float]) -> list[tuple[bytes, bytes]]:
        """OpenAI's ``x-ratelimit-limit-*``/``x-ratelimit-remaining-*`` for the tightest request
        and token limits (the ones with the least room left), given the counts ``used`` per
        check after admission; none for concurrency limits alone."""
        pairs: list[tuple[bytes, bytes]] = []
        for limit_name, remaining_name, members in self._headers:
            tightest_limit = b""
            tightest = -1
            for position, limit, limit_bytes in members:
                room = limit - used[position] + 1e-9
                remaining = int(room) if room > 0 else 0  # max(0, floor(room)), cheaper
                if tightest < 0 or remaining < tightest:
                    tightest, tightest_limit = remaining, limit_bytes
            pairs.append((limit_name, tightest_limit))
            pairs.append((remaining_name, str(tightest).encode()))
        return pairs


def admission_tokens(body: Mapping[str, Any]) -> int:
    """Tokens a request is charged when admitted: its prompt estimate plus its output limit.

    Without ``max_tokens``/``max_completion_tokens`` only the prompt is charged (charging the
    whole context window would refuse every request under a modest limit); the real output is
    added when the call ends. ValueError for a body whose fields have the wrong types."""
    prompt = estimate_prompt_tokens(body)
    for field_name in ("max_completion_tokens", "max_tokens"):
        value = body.get(field_name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"request body: {field_name!r} must be a non-negative integer")
        return prompt + value
    return prompt


def window_position(now: float) -> tuple[int, float]:
    """The current window's number and the weight the previous window still carries."""
    window = int(now // WINDOW_S)
    elapsed = (now - window * WINDOW_S) / WINDOW_S
    return window, 1.0 - elapsed


def sliding_count(current: int, previous: int, previous_weight: float) -> float:
    """What a window limit counts at one moment (see the module docstring)."""
    return current + previous * previous_weight


def fits(current: int, previous: int, previous_weight: float, amount: int, limit: int) -> bool:
    """Whether ``amount`` more stays within ``limit``. Backends evaluate this same inequality
    (a tiny epsilon absorbs float noise, so an exact fit is never refused by rounding)."""
    return current + previous * previous_weight + amount <= limit + 1e-9


def retry_after_s(current: int, previous: int, amount: int, limit: int, now: float) -> int | None:
    """Whole seconds until ``amount`` fits under a window limit if nothing else arrives; None
    when it never can (the request alone is over the limit)."""
    if amount > limit:
        return None
    _window, weight = window_position(now)
    elapsed = 1.0 - weight
    if current + amount <= limit:
        if previous <= 0:
            return 1
        # previous * (1 - f) <= limit - current - amount
        needed = 1.0 - (limit - current - amount) / previous
        wait = (needed - elapsed) * WINDOW_S
    else:
        # Next window: the current count becomes the previous one and decays from full weight.
        needed = 1.0 - (limit - amount) / current
        wait = (1.0 - elapsed + needed) * WINDOW_S
    return max(1, math.ceil(wait - 1e-9))


@dataclass(frozen=True, slots=True)
class Admission:
    """What a backend answered: admitted, or the first check that did not fit.

    ``used`` holds, per check in order, the count after this request (window limits: the
    sliding count; concurrency: requests in flight). On a refusal ``failed`` is the index of
    the check that did not fit, and ``current``/``previous`` its counts then (for a
    concurrency check ``current`` is the number in flight)."""

    admitted: bool
    used: tuple[float, ...] = ()
    failed: int = -1
    current: int = 0
    previous: int = 0


def refusal_message(check: Check, admission: Admission, weight: float) -> str:
    """What the 429 says, in the words OpenAI uses for its own rate limits."""
    rule = check.rule.ref
    if check.kind == "concurrent":
        return (
            f"Rate limit reached for concurrent requests in RateLimit {rule}: "
            f"Limit {check.limit}, In flight {admission.current}. "
            "Please try again when a request finishes."
        )
    unit = "requests per min (RPM)" if check.kind == "requests" else "tokens per min (TPM)"
    used = math.ceil(sliding_count(admission.current, admission.previous, weight) - 1e-9)
    if check.amount > check.limit:
        return (
            f"Request too large for {unit} in RateLimit {rule}: Limit {check.limit}, "
            f"Requested {check.amount}. Lower max_tokens or the prompt."
        )
    return (
        f"Rate limit reached for {unit} in RateLimit {rule}: Limit {check.limit}, "
        f"Used {used}, Requested {check.amount}."
    )
