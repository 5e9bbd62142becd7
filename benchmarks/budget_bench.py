"""Budget ledger benchmark: reserve+settle pairs per second on each counter backend.

    python benchmarks/budget_bench.py [--quick] [--fleet-only]

Every pair is what the gateway does per request: reserve the worst case against two budgets
(a team's token limit and a model's USD limit, both hard) and settle the real cost. Rows:
one request at a time (the latency a request pays: µs per reserve and per settle, medians)
and 32 requests in flight in one process (throughput; pairs/s is the mean, so slow outliers
such as WAL checkpoints count). PostgreSQL and Redis are local and each operation is one
round trip to them. All pairs hit the same two budgets: the hottest case, where PostgreSQL
holds serialise on the budget's row lock until their commit is flushed; the "commit not
flushed" rows open the counters with ``durable=False`` (``synchronous_commit=off``).

The second table is the exactness run of tests/metering (its worker, four processes, 400
concurrent reservations against a hard budget that fits 100 worst cases, each granted one
settled twice at once): how many were granted, what was spent against the limit, how many
duplicate settles charged (must be 0), and how long the 400 took.

The third table is the same through the real gateway (tests/serving/budget_fleet.py): four
``corral serve --role gateway`` processes on one PostgreSQL store, their budget counters in
that database or in Redis (``CORRAL_COUNTERS_URL``), 400 concurrent chat requests over HTTP
from one team's API key against a hard budget that holds 100 worst cases (2,000 tokens; each
request holds 20 and uses 15), an upstream answering in 50 ms. Columns: the limit, what the
ledger settled, successes, 429s (every non-200 must be a 429 ``budget_exceeded``), tokens over
the limit (must be 0), whether the settled spend equals the usage the clients were answered
(nothing charged twice or missed), and the wall time of the 400. Shared 2-core machine: read
the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from rich.console import Console
from rich.table import Table

from corral.metering import Amount, BudgetLedger, BudgetRule, CounterBackend, Reservation
from corral.store.budget_ledger import open_budget_counters

POSTGRES = os.environ.get(
    "CORRAL_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS = os.environ.get("CORRAL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TESTS = Path(__file__).resolve().parent.parent / "tests"
WORKER = TESTS / "metering" / "budget_exactness_worker.py"
sys.path.insert(0, str(TESTS / "serving"))
from budget_fleet import FleetOutcome, run_fleet  # noqa: E402
from budget_upstream import metered_upstream  # noqa: E402

RULES = [
    BudgetRule("bench", "team", "team", "t", "month", True, 10**15, None),
    BudgetRule("bench", "model", "model", "m", "month", True, None, 10**15),
]
HOLD, ACTUAL = Amount(2_000, 9_000), Amount(700, 3_100)


async def drop(backend: str, url: str, name: str) -> None:
    if backend.startswith("postgres"):
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f"DROP TABLE IF EXISTS {name}_counters, {name}_reservations")
            await conn.execute(f"DROP FUNCTION IF EXISTS {name}_reserve, {name}_finish")
        finally:
            await conn.close()
    elif backend == "redis":
        client = aioredis.Redis.from_url(url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{name}:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


async def one_pair(ledger: BudgetLedger) -> tuple[float, float]:
    started = time.perf_counter()
    reservation = await ledger.reserve(RULES, HOLD)
    reserved = time.perf_counter()
    assert isinstance(reservation, Reservation), reservation
    await ledger.settle(reservation, ACTUAL)
    return reserved - started, time.perf_counter() - reserved


async def measure(counters: CounterBackend, pairs: int, in_flight: int) -> dict[str, float]:
    ledger = BudgetLedger(counters)
    await one_pair(ledger)  # warm: tables, scripts, pool
    reserve_s: list[float] = []
    settle_s: list[float] = []
    started = time.perf_counter()
    if in_flight == 1:
        for _ in range(pairs):
            took = await one_pair(ledger)
            reserve_s.append(took[0])
            settle_s.append(took[1])
    else:
        remaining = pairs

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                took = await one_pair(ledger)
                reserve_s.append(took[0])
                settle_s.append(took[1])

        await asyncio.gather(*(client() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    return {
        "pairs_per_s": len(reserve_s) / elapsed,
        "reserve_us": statistics.median(reserve_s) * 1e6,
        "settle_us": statistics.median(settle_s) * 1e6,
    }


async def exactness(url: str, name: str) -> dict[str, Any]:
    processes, per_process, hold, fits = 4, 100, 1000, 100
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            url,
            name,
            str(per_process),
            str(hold),
            str(hold * fits),
            str(seed),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for seed in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None
        await proc.stdout.readline()
    outputs = await asyncio.gather(*(proc.communicate(b"go\n") for proc in procs))
    results = [json.loads(out.decode().splitlines()[-1]) for out, _err in outputs]
    outcomes = [outcome for result in results for outcome in result["outcomes"]]
    granted = [outcome for outcome in outcomes if "id" in outcome]
    return {
        "granted": len(granted),
        "refused": len(outcomes) - len(granted),
        "spent": sum(outcome["actual"] for outcome in granted),
        "limit": hold * fits,
        "double": sum(sum(outcome["charged"]) - 1 for outcome in granted),
        "seconds": max(result["seconds"] for result in results),
    }


async def fleet(counters: str) -> FleetOutcome:
    """The gateway run with counters in the store's PostgreSQL or in Redis (a fresh store)."""
    database = f"corral_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(POSTGRES)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    url = POSTGRES.rsplit("/", 1)[0] + f"/{database}"
    try:
        with tempfile.TemporaryDirectory() as root, metered_upstream(delay_s=0.05) as upstream:
            return await run_fleet(
                url,
                upstream.base_url,
                Path(root),
                counters_url=REDIS if counters == "redis" else None,
            )
    finally:
        admin = await asyncpg.connect(POSTGRES)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()


async def fleet_table() -> Table:
    table = Table(
        title="through the gateway: 4 gateway processes, 400 concurrent requests, "
        "hard budget fits 100"
    )
    columns = (
        "counters",
        "limit",
        "settled",
        "successes",
        "429s",
        "over limit",
        "settled = answered",
        "seconds",
    )
    for column in columns:
        table.add_column(column, justify="right" if column != "counters" else "left")
    for counters in ("postgres", "redis"):
        run = await fleet(counters)
        not_429 = [r for r in run.refusals if (r[0], r[1]) != (429, "budget_exceeded")]
        assert not not_429, f"{counters}: answers other than 429 budget_exceeded: {not_429[:3]}"
        table.add_row(
            counters,
            f"{run.limit:,}",
            f"{run.spent:,}",
            str(run.successes),
            str(len(run.refusals)),
            str(run.over_limit),
            "yes" if run.spent == run.answered_tokens and run.held == 0 else "NO",
            f"{run.seconds:.2f}",
        )
    return table


async def main(quick: bool, fleet_only: bool) -> None:
    console = Console(width=120)
    if fleet_only:
        console.print(await fleet_table())
        return
    pairs = 300 if quick else 3000
    speed = Table(title=f"reserve + settle against 2 hard budgets ({pairs} pairs per row)")
    for column in ("backend", "in flight", "pairs/s", "reserve µs p50", "settle µs p50"):
        speed.add_column(column, justify="right" if column != "backend" else "left")
    exact = Table(title="exactness: 4 processes, 400 concurrent reservations, budget fits 100")
    for column in ("backend", "granted", "refused", "spent / limit", "charged twice", "seconds"):
        exact.add_column(column, justify="right" if column != "backend" else "left")
    with tempfile.TemporaryDirectory() as scratch:
        targets = [
            ("postgres", POSTGRES, True),
            ("postgres, commit not flushed", POSTGRES, False),
            ("redis", REDIS, True),
            ("sqlite", f"sqlite:///{scratch}/budget.db", True),
        ]
        for backend, url, durable in targets:
            name = f"bench_{secrets.token_hex(4)}"
            counters = await open_budget_counters(url, name=name, durable=durable)
            try:
                for in_flight in (1, 32):
                    row = await measure(counters, pairs, in_flight)
                    speed.add_row(
                        backend,
                        str(in_flight),
                        f"{row['pairs_per_s']:,.0f}",
                        f"{row['reserve_us']:,.0f}",
                        f"{row['settle_us']:,.0f}",
                    )
                if not durable:
                    continue  # the exactness worker opens durable counters
                run = await exactness(url, name + "_x")
                exact.add_row(
                    backend,
                    str(run["granted"]),
                    str(run["refused"]),
                    f"{run['spent']:,} / {run['limit']:,}",
                    str(run["double"]),
                    f"{run['seconds']:.2f}",
                )
            finally:
                await counters.close()
                await drop(backend, url, name)
                await drop(backend, url, name + "_x")
    console.print(speed)
    console.print(exact)
    console.print(await fleet_table())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer pairs per row")
    parser.add_argument(
        "--fleet-only", action="store_true", help="only the run through 4 gateway processes"
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.quick, arguments.fleet_only))
