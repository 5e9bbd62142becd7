"""No budget is overspent and nothing is charged twice, with four gateway processes at once.

Four subprocesses share one counter backend and fire 400 concurrent reservations in total at
a hard budget that fits about 100 worst cases; each granted reservation settles a random real
cost <= its hold, twice at once. Afterwards the counters must equal the sum of the real costs
(no charge lost, none doubled), stay within the limit, and hold nothing; every refusal names
its budget and says why.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from pathlib import Path
from typing import Any

import pytest
from budget_backends import drop, target_url
from budget_exactness_worker import MICRO_USD_PER_TOKEN, budgets

from corral.metering import BudgetLedger
from corral.store.budget_ledger import open_budget_counters

WORKER = Path(__file__).with_name("budget_exactness_worker.py")
PROCESSES, PER_PROCESS, HOLD, FITS = 4, 100, 1000, 100
LIMIT = HOLD * FITS


async def run_workers(url: str, name: str) -> list[dict[str, Any]]:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            url,
            name,
            str(PER_PROCESS),
            str(HOLD),
            str(LIMIT),
            str(seed),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for seed in range(PROCESSES)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            ready = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert ready == b"ready\n", (ready, await proc.stderr.read() if proc.stderr else b"")
        finished = await asyncio.wait_for(
            asyncio.gather(*(proc.communicate(b"go\n") for proc in procs)), 90
        )
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    results = []
    for proc, (out, err) in zip(procs, finished, strict=True):
        assert proc.returncode == 0, err.decode()
        results.append(json.loads(out.decode().splitlines()[-1]))
    return results


@pytest.mark.parametrize("backend", ["postgres", "redis", "sqlite"])
async def test_four_processes_never_overspend_and_never_charge_twice(
    backend: str, tmp_path: Path
) -> None:
    url, name = target_url(backend, tmp_path), f"t_{secrets.token_hex(6)}"
    counters = await open_budget_counters(url, name=name)
    try:
        results = await run_workers(url, name)
        outcomes = [outcome for result in results for outcome in result["outcomes"]]
        granted = [outcome for outcome in outcomes if "id" in outcome]
        refused = [outcome for outcome in outcomes if "refused" in outcome]

        assert len(outcomes) == PROCESSES * PER_PROCESS
        assert len({outcome["id"] for outcome in granted}) == len(granted)
        assert all(sorted(outcome["charged"]) == [False, True] for outcome in granted)
        assert refused, "400 reservations of at least half a hold each cannot all fit"
        for refusal in refused:
            assert refusal["budget"] in ("exact/team", "exact/model")
            assert refusal["refused"].startswith(f"budget {refusal['budget']}: ")
        # Any refusal means spent + held passed LIMIT - HOLD, and each grant adds <= HOLD.
        assert len(granted) >= FITS

        team, model = budgets(LIMIT)
        ledger = BudgetLedger(counters)
        real_tokens = sum(outcome["actual"] for outcome in granted)
        assert await ledger.usage(team) == {"tokens": (real_tokens, 0)}
        assert await ledger.usage(model) == {"usd": (real_tokens * MICRO_USD_PER_TOKEN, 0)}
        assert real_tokens <= LIMIT
    finally:
        await counters.close()
        await drop(backend, url, name)
