"""A gateway stand-in for the crash test: owns the budget counters, settles, then waits to die.

    python owned_counters_worker.py FILE NAME COUNT

Reserves and settles COUNT requests of 7 tokens each against one budget key, printing
``settled N`` after each settle returned, then sleeps until the test kills it (SIGKILL).
"""

from __future__ import annotations

import asyncio
import sys

from corral.store.budget_ledger import open_budget_counters


async def main(path: str, name: str, count: int) -> None:
    counters = await open_budget_counters(f"sqlite:///{path}", name=name, owned=True)
    for index in range(count):
        ok, _ = await counters.reserve(f"r{index}", [("team/tokens", 10, 1_000_000)], 1e12)
        assert ok
        await counters.settle(f"r{index}", {"team/tokens": 7})
        print(f"settled {index + 1}", flush=True)
    # A request still in flight at the kill: held, never settled.
    await counters.reserve("in-flight", [("team/tokens", 10, 1_000_000)], 1e12)
    print("holding", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
