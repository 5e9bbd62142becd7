"""Rate-limit stage benchmark: what the stage adds to a request, per counter backend.

    python benchmarks/ratelimit_bench.py [--quick]

The real ``RateLimitExtension.stage`` runs around a call that returns at once (no upstream),
so the time is the stage's own: finding the RateLimits that apply, the admission round trip
and, when the request holds a concurrency slot or is charged tokens, the round trip after the
call that frees the slot and corrects the charge. Rows:

- no RateLimit applies: dictionary lookups only, no round trip (any backend);
- RPM: one RateLimit with requestsPerMinute: one round trip;
- RPM + TPM + concurrency: one RateLimit with all three: the admission (one round trip for
  all three) and the finish (one more).

Columns: µs per request one at a time (median and p99: the latency a request pays) and
requests/s with 32 in flight in one process (throughput; all hit the same limit, the hottest
case). PostgreSQL and Redis are local. Shared 2-core machine: read the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from rich.console import Console
from rich.table import Table

from corral.gateway import Call
from corral.gateway.routes import RouteTable
from corral.identity import Principal
from corral.metering.ratelimits import RateLimitRule, RateLimitSet
from corral.observability import UsageReport
from corral.server.config import ServerConfig
from corral.server.extensions import ServerContext
from corral.server.ratelimit_extension import RateLimitExtension
from corral.store.ratelimit_counters import open_ratelimit_counters

POSTGRES = os.environ.get(
    "CORRAL_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS = os.environ.get("CORRAL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
KEY = Principal("team-key", "default/bench-key", team="bench", namespace="default")
BODY = {"model": "chat", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}
HUGE = 1_000_000_000
SCENARIOS = {
    "no RateLimit applies": RateLimitRule("default", "other", "model", "embed", HUGE, None, None),
    "RPM": RateLimitRule("default", "rpm", "team", "bench", HUGE, None, None),
    "RPM + TPM + concurrency": RateLimitRule("default", "all", "team", "bench", HUGE, HUGE, HUGE),
}


async def _never(*_args: Any) -> Any:
    raise AssertionError("not used")


async def _answered(call: Call) -> None:
    call.upstream_status = 200
    call.usage = UsageReport(3, 3, True)


def _call() -> Call:
    call = Call(
        {"type": "http", "headers": []}, _never, _never, "/v1/chat/completions", RouteTable()
    )
    call.principal = KEY
    call.payload = BODY
    call.endpoint = SimpleNamespace(namespace="default", name="chat")  # type: ignore[assignment]
    return call


async def _drop(url: str, name: str) -> None:
    if url.startswith("postgresql"):
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                f"DROP TABLE IF EXISTS {name}_limits, {name}_windows, {name}_leases;"
                f"DROP FUNCTION IF EXISTS {name}_admit"
            )
        finally:
            await conn.close()
    elif url.startswith("redis"):
        client = aioredis.Redis.from_url(url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{name}:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


async def measure(url: str, rule: RateLimitRule, sequential: int, concurrent: int) -> list[float]:
    name = f"bench_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as state:
        context = ServerContext(
            config=ServerConfig(state_dir=Path(state)),
            state_dir=Path(state),
            store=None,  # type: ignore[arg-type]
            store_url="sqlite:///unused.db",
            stop=asyncio.Event(),
        )
        extension = RateLimitExtension(context)
        extension.counters = await open_ratelimit_counters(url, name=name)
        extension.feed = SimpleNamespace(limits=RateLimitSet([rule]))  # type: ignore[assignment]
        try:
            for _ in range(200):  # warm the pool, the prepared statements and the scripts
                await extension.stage(_call(), _answered)
            times = []
            for _ in range(sequential):
                call = _call()
                started = time.perf_counter()
                await extension.stage(call, _answered)
                times.append((time.perf_counter() - started) * 1e6)
            times.sort()

            async def worker(count: int) -> None:
                for _ in range(count):
                    await extension.stage(_call(), _answered)

            started = time.perf_counter()
            await asyncio.gather(*(worker(concurrent // 32) for _ in range(32)))
            rate = (concurrent // 32) * 32 / (time.perf_counter() - started)
        finally:
            await extension.aclose()
            await _drop(url, name)
    return [statistics.median(times), times[int(len(times) * 0.99) - 1], rate]


async def main(quick: bool) -> None:
    sequential, concurrent = (500, 1_600) if quick else (3_000, 9_600)
    table = Table(title="rate-limit stage: µs per request and requests/s (32 in flight)")
    for column in ("scenario", "backend", "p50 µs", "p99 µs", "req/s (32 in flight)"):
        table.add_column(column, justify="left" if column in ("scenario", "backend") else "right")
    with tempfile.TemporaryDirectory() as scratch:
        backends = {
            "SQLite": f"sqlite:///{Path(scratch) / 'rl.db'}",
            "PostgreSQL": POSTGRES,
            "Redis": REDIS,
        }
        for scenario, rule in SCENARIOS.items():
            chosen = {"-": backends["SQLite"]} if scenario.startswith("no ") else backends
            for backend, url in chosen.items():
                p50, p99, rate = await measure(url, rule, sequential, concurrent)
                table.add_row(scenario, backend, f"{p50:,.1f}", f"{p99:,.1f}", f"{rate:,.0f}")
                print(f"{scenario} / {backend}: p50 {p50:.1f} µs", file=sys.stderr)
    Console().print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    asyncio.run(main(parser.parse_args().quick))
