"""One gateway process of the budget exactness test (run by test_budget_exactness_across_processes).

Opens the shared counters, prints ``ready``, waits for ``go`` on stdin, then fires COUNT
concurrent reservations at a hard team budget (tokens) and a hard model budget (USD). Each
granted one sleeps a little, then settles a random actual cost <= its hold twice at once (only
one may charge). Prints one JSON document with every outcome.

Usage: python budget_exactness_worker.py URL NAME COUNT HOLD_TOKENS LIMIT_TOKENS SEED
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from typing import Any

from corral.metering import Amount, BudgetLedger, BudgetRule, Refusal
from corral.store.budget_ledger import open_budget_counters

MICRO_USD_PER_TOKEN = 10


def budgets(limit_tokens: int) -> list[BudgetRule]:
    usd_limit = limit_tokens * MICRO_USD_PER_TOKEN
    return [
        BudgetRule("exact", "team", "team", "t", "total", True, limit_tokens, None),
        BudgetRule("exact", "model", "model", "m", "total", True, None, usd_limit),
    ]


async def run(url: str, name: str, count: int, hold: int, limit: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    counters = await open_budget_counters(url, name=name)
    try:
        ledger = BudgetLedger(counters)
        rules = budgets(limit)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

        async def one() -> dict[str, Any]:
            outcome = await ledger.reserve(rules, Amount(hold, hold * MICRO_USD_PER_TOKEN))
            if isinstance(outcome, Refusal):
                return {"refused": outcome.reason, "budget": outcome.budget}
            await asyncio.sleep(rng.random() * 0.02)
            tokens = rng.randint(hold // 2, hold)
            actual = Amount(tokens, tokens * MICRO_USD_PER_TOKEN)
            first, second = await asyncio.gather(
                ledger.settle(outcome, actual), ledger.settle(outcome, actual)
            )
            return {"id": outcome.id, "actual": tokens, "charged": [first.charged, second.charged]}

        started = asyncio.get_running_loop().time()
        outcomes = await asyncio.gather(*(one() for _ in range(count)))
        elapsed = asyncio.get_running_loop().time() - started
        return {"outcomes": outcomes, "seconds": elapsed}
    finally:
        await counters.close()


if __name__ == "__main__":
    url, name, count, hold, limit, seed = sys.argv[1:7]
    result = asyncio.run(run(url, name, int(count), int(hold), int(limit), int(seed)))
    print(json.dumps(result), flush=True)
