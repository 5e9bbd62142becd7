"""Fixtures for the metering tests: a fresh counter backend (each of the three) and a clock."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from budget_backends import BACKENDS, CounterTarget, FakeClock, drop, target_url

from corral.metering import CounterBackend


@pytest.fixture(params=BACKENDS)
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CounterTarget]:
    backend = str(request.param)
    found = CounterTarget(backend, target_url(backend, tmp_path), f"t_{secrets.token_hex(6)}", [])
    try:
        yield found
    finally:
        for counters in found.opened:
            await counters.close()
        await drop(backend, found.url, found.name)


@pytest.fixture
async def counters(target: CounterTarget) -> CounterBackend:
    return await target.open()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)  # 2023-11-14T22:13:20Z
