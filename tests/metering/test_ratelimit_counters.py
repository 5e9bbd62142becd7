"""The rate-limit counter backends (SQLite, PostgreSQL, Redis) behave alike: all-or-nothing
admission, sliding windows, leases that free themselves, corrections, and exactness when many
admissions race from several handles (as several gateway processes would).

PostgreSQL and Redis that cannot be reached fail the test: nothing is skipped.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from budget_backends import BACKENDS, SHARED_BACKENDS, target_url

from corral.store.ratelimit_counters import (
    Answer,
    SqliteRateLimitCounters,
    open_ratelimit_counters,
)

NOW = 1_700_000_040.0  # the start of a minute
WINDOW = int(NOW // 60)
Opener = Callable[[], Awaitable[Any]]


async def _opener(backend: str, tmp_path: Path) -> AsyncIterator[Opener]:
    url = target_url(backend, tmp_path)
    name = f"t_{secrets.token_hex(6)}"
    opened: list[Any] = []

    async def open_one() -> Any:
        counters = await open_ratelimit_counters(url, name=name, owned=backend == "sqlite-owned")
        opened.append(counters)
        return counters

    try:
        yield open_one
    finally:
        for counters in opened:
            await counters.close()
        await _drop(backend, url, name)


@pytest.fixture(params=BACKENDS)
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    async for found in _opener(str(request.param), tmp_path):
        yield found


@pytest.fixture(params=SHARED_BACKENDS)
async def shared_opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Backends several gateway processes share (the owned SQLite file admits one handle)."""
    async for found in _opener(str(request.param), tmp_path):
        yield found


async def _drop(backend: str, url: str, name: str) -> None:
    if backend == "postgres":
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                f"DROP TABLE IF EXISTS {name}_limits, {name}_windows, {name}_leases;"
                f"DROP FUNCTION IF EXISTS {name}_admit"
            )
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


async def admit(
    counters: Any,
    checks: list[tuple[str, bool, int, int]],
    *,
    now: float = NOW,
    lease: str = "",
) -> Answer:
    window = int(now // 60)
    weight = 1.0 - (now - window * 60) / 60
    answer: Answer = await counters.admit(
        checks, now=now, window=window, weight=weight, lease_id=lease, lease_expires=now + 60
    )
    return answer


async def test_admission_is_all_or_nothing(opener: Opener) -> None:
    counters = await opener()
    checks = [("r/rpm", True, 3, 1), ("r/tpm", True, 100, 40)]
    first = await admit(counters, checks)
    assert first.admitted
    assert first.used == (1.0, 40.0)
    assert (await admit(counters, checks)).used == (2.0, 80.0)
    # The token limit refuses the third; its request is then not counted either.
    refused = await admit(counters, checks)
    assert (refused.admitted, refused.failed, refused.current, refused.previous) == (
        False,
        1,
        80,
        0,
    )
    assert (await admit(counters, [("r/rpm", True, 3, 1)])).used == (3.0,)
    assert not (await admit(counters, [("r/rpm", True, 3, 1)])).admitted


async def test_the_previous_minute_weighs_less_as_the_current_one_passes(opener: Opener) -> None:
    counters = await opener()
    rpm = [("s/rpm", True, 10, 1)]
    for _ in range(10):
        assert (await admit(counters, rpm, now=NOW + 5)).admitted
    assert not (await admit(counters, rpm, now=NOW + 59)).admitted
    # 15 s into the next minute: 10 * 0.75 = 7.5 counted, so 2 more fit, not 3.
    later = NOW + 75
    assert (await admit(counters, rpm, now=later)).used == (8.5,)
    assert (await admit(counters, rpm, now=later)).used == (9.5,)
    refused = await admit(counters, rpm, now=later)
    assert (refused.admitted, refused.current, refused.previous) == (False, 2, 10)
    # A minute later the 10 no longer count at all; the 2 of the minute before weigh fully.
    assert (await admit(counters, rpm, now=NOW + 120)).used == (3.0,)


async def test_concurrency_slots_are_freed_by_finish_or_by_lease_expiry(opener: Opener) -> None:
    counters = await opener()
    slot = [("c/concurrent", False, 2, 1)]
    assert (await admit(counters, slot, lease="a")).used == (1.0,)
    assert (await admit(counters, slot, lease="b")).used == (2.0,)
    refused = await admit(counters, slot, lease="c")
    assert (refused.admitted, refused.current) == (False, 2)
    await counters.finish("a", ["c/concurrent"], [])
    assert (await admit(counters, slot, lease="c")).admitted
    # b and c belong to a process that died: nobody renews them; after the TTL they are gone.
    assert (await admit(counters, slot, now=NOW + 61, lease="d")).used == (1.0,)


async def test_renewed_leases_outlive_their_first_expiry(opener: Opener) -> None:
    counters = await opener()
    slot = [("n/concurrent", False, 1, 1)]
    assert (await admit(counters, slot, lease="long")).admitted
    await counters.renew([("n/concurrent", "long")], NOW + 200)
    assert not (await admit(counters, slot, now=NOW + 100, lease="other")).admitted
    assert (await admit(counters, slot, now=NOW + 201, lease="other")).admitted


async def test_token_corrections_move_the_charge_never_below_zero(opener: Opener) -> None:
    counters = await opener()
    tpm = [("t/tpm", True, 100, 70)]
    assert (await admit(counters, tpm)).used == (70.0,)
    assert not (await admit(counters, tpm)).admitted
    await counters.finish("", [], [("t/tpm", WINDOW, 6 - 70)])
    assert (await admit(counters, tpm)).used == (76.0,)
    await counters.finish("", [], [("t/tpm", WINDOW, -1000)])
    assert (await admit(counters, [("t/tpm", True, 100, 1)])).used == (1.0,)


async def test_sweep_drops_old_windows_and_expired_leases(opener: Opener) -> None:
    counters = await opener()
    assert (await admit(counters, [("w/rpm", True, 1, 1)])).admitted
    assert (await admit(counters, [("w/concurrent", False, 1, 1)], lease="x")).admitted
    await counters.sweep(NOW + 300, WINDOW + 5)
    assert (await admit(counters, [("w/rpm", True, 1, 1)], now=NOW + 300)).admitted
    assert (await admit(counters, [("w/concurrent", False, 1, 1)], now=NOW + 300)).admitted


async def test_racing_admissions_from_several_handles_admit_exactly_the_limit(
    shared_opener: Opener,
) -> None:
    handles = [await shared_opener() for _ in range(3)]
    checks = [("x/rpm", True, 25, 1), ("x/concurrent", False, 1000, 1)]

    async def one(index: int) -> bool:
        answer = await admit(handles[index % 3], checks, lease=f"l{index}")
        return answer.admitted

    outcomes = await asyncio.gather(*(one(i) for i in range(90)))
    assert sum(outcomes) == 25


async def test_a_url_no_backend_understands_is_refused_with_examples(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="use postgresql://user@host/db, redis://host"):
        await open_ratelimit_counters("mysql://db/x")
    with pytest.raises(ValueError, match=r"write sqlite:///relative.db or sqlite:////abs.db"):
        await open_ratelimit_counters("sqlite://")
    with pytest.raises(ValueError, match=r"counter name 'x; DROP TABLE y'"):
        SqliteRateLimitCounters(str(tmp_path / "r.db"), name="x; DROP TABLE y")


async def test_racing_admissions_fill_a_concurrency_limit_exactly(
    shared_opener: Opener,
) -> None:
    handles = [await shared_opener() for _ in range(3)]
    slot = [("y/concurrent", False, 7, 1)]

    async def one(index: int) -> bool:
        answer = await admit(handles[index % 3], slot, lease=f"l{index}")
        return answer.admitted

    outcomes = await asyncio.gather(*(one(i) for i in range(40)))
    assert sum(outcomes) == 7
    admitted = [f"l{i}" for i, ok in enumerate(outcomes) if ok]
    await handles[0].finish(admitted[0], ["y/concurrent"], [])
    assert (await admit(handles[1], slot, lease="late")).used == (7.0,)
