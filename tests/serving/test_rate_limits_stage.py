"""The rate-limit stage on its own: whom a call counts for, no round trip when no RateLimit
applies, audited refusals, headers on admitted answers, corrections after the call and a 503
when the counters are down. Real SQLite counters; the call and the inner stages are doubles.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from corral.audit import AuditEvent
from corral.gateway import Call, GatewayError
from corral.gateway.routes import RouteTable
from corral.identity import Principal
from corral.metering.ratelimits import RateLimitRule, RateLimitSet
from corral.observability import UsageReport
from corral.server.config import ServerConfig
from corral.server.extensions import ServerContext
from corral.server.ratelimit_extension import (
    COUNTERS_URL_ENV,
    LEASE_TTL_ENV,
    RateLimitExtension,
    applicable_rules,
    counters_url,
    lease_ttl_s,
)
from corral.store.ratelimit_counters import SqliteRateLimitCounters

SEARCH_KEY = Principal("team-key", "default/search-key", team="search", namespace="default")
HELLO = {"model": "chat", "messages": [{"role": "user", "content": "Say hello."}]}


class Sink:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)


class CountingCounters(SqliteRateLimitCounters):
    admits = 0
    finishes = 0

    async def admit(self, *args: Any, **kwargs: Any) -> Any:
        self.admits += 1
        return await super().admit(*args, **kwargs)

    async def finish(self, *args: Any, **kwargs: Any) -> None:
        self.finishes += 1
        await super().finish(*args, **kwargs)


def make_call(principal: Principal | None, payload: dict[str, Any], endpoint: str = "chat") -> Call:
    call = Call(
        {"type": "http", "headers": []}, _never, _never, "/v1/chat/completions", RouteTable()
    )
    call.principal = principal
    call.payload = payload
    call.endpoint = SimpleNamespace(namespace="default", name=endpoint)  # type: ignore[assignment]
    return call


async def _never(*_args: Any) -> Any:
    raise AssertionError("the stage under test must not touch the connection")


@pytest.fixture
def extension(tmp_path: Path) -> RateLimitExtension:
    context = ServerContext(
        config=ServerConfig(state_dir=tmp_path),
        state_dir=tmp_path,
        store=None,  # type: ignore[arg-type]
        store_url=f"sqlite:///{tmp_path / 'corral.db'}",
        stop=asyncio.Event(),
    )
    context.audit = Sink()
    made = RateLimitExtension(context)
    made.counters = CountingCounters(str(tmp_path / "rl.db"))
    return made


def use_rules(extension: RateLimitExtension, *rules: RateLimitRule) -> None:
    extension.feed = SimpleNamespace(limits=RateLimitSet(rules))  # type: ignore[assignment]


def answered(usage: UsageReport | None) -> Any:
    async def call_next(call: Call) -> None:
        call.upstream_status = 200
        call.usage = usage

    return call_next


def test_which_rate_limits_a_call_counts_against() -> None:
    limits = RateLimitSet(
        [
            RateLimitRule("default", "team", "team", "search", 1, None, None),
            RateLimitRule("default", "key", "apikey", "search-key", 1, None, None),
            RateLimitRule("default", "model", "model", "chat", 1, None, None),
            RateLimitRule("ops", "agent", "agent", "bot", 1, None, None),
            RateLimitRule("ops", "ops-team", "team", "ads", 1, None, None),
            RateLimitRule("corral-system", "admins", "team", "admin", 1, None, None),
            RateLimitRule("other", "elsewhere", "model", "chat", 1, None, None),
        ]
    )

    def names(principal: Principal | None) -> set[str]:
        return {rule.name for rule in applicable_rules(limits, make_call(principal, HELLO))}

    assert names(SEARCH_KEY) == {"team", "key", "model"}
    bot = Principal(
        "workload", "spiffe://corral.local/ns/ops/agent/bot", team="ads", namespace="ops"
    )
    assert names(bot) == {"agent", "ops-team", "model"}
    admin = Principal("user", "admin", team="admin", namespace="corral-system")
    assert names(admin) == {"admins", "model"}
    assert names(None) == {"model"}
    call = make_call(SEARCH_KEY, HELLO)
    call.endpoint = None
    assert applicable_rules(limits, call) == ()


async def test_no_round_trip_when_no_rate_limit_applies(extension: RateLimitExtension) -> None:
    counters = extension.counters
    assert isinstance(counters, CountingCounters)
    use_rules(extension)
    await extension.stage(make_call(SEARCH_KEY, HELLO), answered(None))
    use_rules(extension, RateLimitRule("default", "other", "model", "embed", 1, None, None))
    call = make_call(SEARCH_KEY, HELLO)
    await extension.stage(call, answered(None))
    assert (counters.admits, counters.finishes) == (0, 0)
    assert call.response_hooks == []


async def test_admitted_calls_carry_headers_and_refusals_are_audited(
    extension: RateLimitExtension,
) -> None:
    use_rules(extension, RateLimitRule("default", "two", "team", "search", 2, None, None))
    for left in (b"1", b"0"):
        call = make_call(SEARCH_KEY, HELLO)
        await extension.stage(call, answered(UsageReport(3, 3, True)))
        (hook,) = call.response_hooks
        headers: list[tuple[bytes, bytes]] = []
        hook.start(200, headers)
        assert headers == [
            (b"x-ratelimit-limit-requests", b"2"),
            (b"x-ratelimit-remaining-requests", left),
        ]
        assert hook.chunk(b"data") == b"data"
        assert hook.end() == b""
    with pytest.raises(GatewayError) as refused:
        await extension.stage(make_call(SEARCH_KEY, HELLO), answered(None))
    error = refused.value
    assert (error.status, error.type, error.code) == (429, "requests", "rate_limit_exceeded")
    names = [name for name, _ in error.headers]
    assert names[:3] == [
        b"retry-after",
        b"x-ratelimit-limit-requests",
        b"x-ratelimit-remaining-requests",
    ]
    sink = extension.context.audit
    assert isinstance(sink, Sink)
    (event,) = sink.events
    assert (event.actor, event.action, event.resource, event.decision) == (
        "team-key:default/search-key",
        "ratelimit.refuse",
        "RateLimit/default/two",
        "deny",
    )
    assert event.details["limit"] == "requests"
    assert extension.refusals.labels("requests")._value.get() == 1


async def test_the_token_charge_is_corrected_to_the_real_usage(
    extension: RateLimitExtension,
) -> None:
    use_rules(extension, RateLimitRule("default", "tpm", "model", "chat", None, 100, None))
    big = {**HELLO, "max_tokens": 60}  # 70 estimated
    await extension.stage(make_call(SEARCH_KEY, big), answered(UsageReport(3, 3, True)))
    await extension.stage(make_call(SEARCH_KEY, big), answered(UsageReport(None, 4, False)))
    # 6 + (10 estimated prompt + 4 counted) = 20 used: 80 more fit, 81 do not.
    with pytest.raises(GatewayError) as refused:
        await extension.stage(make_call(SEARCH_KEY, {**HELLO, "max_tokens": 71}), answered(None))
    assert refused.value.type == "tokens"
    # A request that never reached an upstream (no usage) gives its whole estimate back, so
    # the same 80 fit again and again.
    for _ in range(3):
        await extension.stage(make_call(SEARCH_KEY, {**HELLO, "max_tokens": 70}), answered(None))
    with pytest.raises(GatewayError):
        await extension.stage(make_call(SEARCH_KEY, {**HELLO, "max_tokens": 71}), answered(None))


async def test_a_bad_max_tokens_is_a_400_and_down_counters_a_503(
    extension: RateLimitExtension,
) -> None:
    use_rules(extension, RateLimitRule("default", "tpm", "model", "chat", 5, 100, 1))
    with pytest.raises(GatewayError) as bad:
        await extension.stage(make_call(SEARCH_KEY, {**HELLO, "max_tokens": "x"}), answered(None))
    assert bad.value.status == 400
    assert extension.counters is not None
    await extension.counters.close()
    with pytest.raises(GatewayError) as down:
        await extension.stage(make_call(SEARCH_KEY, HELLO), answered(None))
    assert (down.value.status, down.value.code) == (503, "rate_limits_unavailable")
    extension.counters = None


def test_where_the_counters_live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    context = SimpleNamespace(state_dir=tmp_path, store_url="sqlite:///x.db")
    monkeypatch.delenv(COUNTERS_URL_ENV, raising=False)
    assert counters_url(context) == f"sqlite:///{tmp_path / 'ratelimits.db'}"  # type: ignore[arg-type]
    context.store_url = "postgresql://db/corral"
    assert counters_url(context) == "postgresql://db/corral"  # type: ignore[arg-type]
    monkeypatch.setenv(COUNTERS_URL_ENV, "redis://127.0.0.1:6379/0")
    assert counters_url(context) == "redis://127.0.0.1:6379/0"  # type: ignore[arg-type]


def test_the_lease_ttl_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LEASE_TTL_ENV, raising=False)
    assert lease_ttl_s() == 60.0
    monkeypatch.setenv(LEASE_TTL_ENV, "7.5")
    assert lease_ttl_s() == 7.5
    for bad in ("soon", "0", "1e9"):
        monkeypatch.setenv(LEASE_TTL_ENV, bad)
        with pytest.raises(ValueError, match=f"CORRAL_RATELIMIT_LEASE_TTL_S='{bad}': expected"):
            lease_ttl_s()


async def test_a_concurrency_slot_is_held_during_the_call_and_freed_after(
    extension: RateLimitExtension,
) -> None:
    use_rules(extension, RateLimitRule("default", "one", "model", "chat", None, None, 1))
    inside: list[int] = []

    async def call_next(call: Call) -> None:
        inside.append(len(extension._in_flight))
        with pytest.raises(GatewayError) as busy:
            await extension.stage(make_call(SEARCH_KEY, HELLO), answered(None))
        assert "concurrent requests" in busy.value.message
        call.upstream_status = 200

    call = make_call(SEARCH_KEY, HELLO)
    await extension.stage(call, call_next)
    assert inside == [1]
    assert call.response_hooks == []  # no OpenAI header describes a concurrency limit
    assert extension._in_flight == {}
    await extension.stage(make_call(SEARCH_KEY, HELLO), answered(None))


async def test_changed_rate_limits_and_teams_apply_from_the_next_call(
    extension: RateLimitExtension,
) -> None:
    # The stage remembers which checks a caller makes per RateLimit snapshot: a new snapshot,
    # or the same key in another team, must not find the old answer.
    one = RateLimitRule("default", "one", "team", "search", 1, None, None)
    use_rules(extension, one)
    await extension.stage(make_call(SEARCH_KEY, HELLO), answered(None))
    with pytest.raises(GatewayError):
        await extension.stage(make_call(SEARCH_KEY, HELLO), answered(None))
    use_rules(extension, RateLimitRule("default", "more", "team", "search", 5, None, None))
    call = make_call(SEARCH_KEY, HELLO)
    await extension.stage(call, answered(None))
    headers: list[tuple[bytes, bytes]] = []
    call.response_hooks[0].start(200, headers)
    assert headers == [
        (b"x-ratelimit-limit-requests", b"5"),
        (b"x-ratelimit-remaining-requests", b"4"),
    ]
    use_rules(extension, one)
    with pytest.raises(GatewayError):
        await extension.stage(make_call(SEARCH_KEY, HELLO), answered(None))
    moved = Principal("team-key", "default/search-key", team="ads", namespace="default")
    await extension.stage(make_call(moved, HELLO), answered(None))
