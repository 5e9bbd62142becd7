"""Where the metering tests' budget counters live: PostgreSQL, Redis and SQLite, each fresh.

"sqlite-owned" is the default single-process install: one handle only (a second is refused).
Every test gets its own table / key prefix (``t_<random>``), removed afterwards, so runs never
see each other's counters. PostgreSQL (``CORRAL_TEST_POSTGRES_DSN``) and Redis
(``CORRAL_TEST_REDIS_URL``) that cannot be reached fail the test: nothing is skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from corral.metering import CounterBackend
from corral.store.budget_ledger import open_budget_counters

POSTGRES_DSN = os.environ.get(
    "CORRAL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CORRAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SHARED_BACKENDS = ("sqlite", "postgres", "redis")
"""Backends several processes (or handles) use at once."""
BACKENDS = (*SHARED_BACKENDS, "sqlite-owned")
"""…and the SQLite file one gateway process owns (counters in memory, the file a journal)."""


@dataclass
class CounterTarget:
    """Where one test's counters live; ``open`` gives another handle on the same counters."""

    backend: str
    url: str
    name: str
    opened: list[CounterBackend]

    async def open(self) -> CounterBackend:
        counters = await open_budget_counters(
            self.url, name=self.name, owned=self.backend == "sqlite-owned"
        )
        self.opened.append(counters)
        return counters


def target_url(backend: str, tmp_path: Path) -> str:
    if backend == "postgres":
        return POSTGRES_DSN
    if backend == "redis":
        return REDIS_URL
    return f"sqlite:///{tmp_path / 'budget.db'}"


async def drop(backend: str, url: str, name: str) -> None:
    if backend == "postgres":
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


class FakeClock:
    """A ``time.time`` stand-in the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
