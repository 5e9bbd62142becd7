"""The SQLite counters one gateway process owns (memory first, the file a journal) lose
nothing a settle promised, across a clean restart and across ``kill -9``, and are never
shared: a second owner, or a process that would share the file, is refused with a way out.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from corral.store.budget_ledger import SqliteBudgetCounters, open_budget_counters
from corral.store.counter_backends import CounterFileInUse
from corral.store.owned_counters import OwnedBudgetCounters, OwnedRateLimitCounters
from corral.store.ratelimit_counters import open_ratelimit_counters

WORKER = Path(__file__).with_name("owned_counters_worker.py")
NAME = "owned_test"


async def test_a_clean_restart_keeps_every_charge_and_forgets_the_holds(tmp_path: Path) -> None:
    path = str(tmp_path / "budgets.db")
    counters = OwnedBudgetCounters(path, name=NAME)
    for index in range(50):
        ok, _ = await counters.reserve(f"r{index}", [("k", 100, 10_000)], 1e12)
        assert ok
        await counters.settle(f"r{index}", {"k": index})
    assert (await counters.reserve("open", [("k", 100, 10_000)], 1e12))[0]
    await counters.close()

    again = OwnedBudgetCounters(path, name=NAME)
    try:
        assert await again.counters(["k"]) == {"k": (sum(range(50)), 0)}
        assert await again.settle("r3", {"k": 5}) == ("unknown", [])
    finally:
        await again.close()


async def test_a_settle_that_returned_survives_kill_9(tmp_path: Path) -> None:
    path = str(tmp_path / "budgets.db")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), path, NAME, "40", stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        while not lines or lines[-1] != "holding":
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, "the worker exited early"
            lines.append(line.decode().strip())
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert lines[-2] == "settled 40"

    counters = await open_budget_counters(f"sqlite:///{path}", name=NAME, owned=True)
    try:
        # All 40 settles were durable when they returned; the in-flight hold died with it.
        assert await counters.counters(["team/tokens"]) == {"team/tokens": (40 * 7, 0)}
    finally:
        await counters.close()


async def test_a_second_owner_is_refused_and_told_how_to_run_several(tmp_path: Path) -> None:
    path = str(tmp_path / "budgets.db")
    first = OwnedBudgetCounters(path, name=NAME)
    try:
        with pytest.raises(CounterFileInUse, match=r"CORRAL_COUNTERS_URL.*postgresql://"):
            OwnedBudgetCounters(path, name=NAME)
        with pytest.raises(CounterFileInUse, match="owned by a gateway process"):
            SqliteBudgetCounters(path, name=NAME)
    finally:
        await first.close()
    # Once the owner is gone the file opens again, either way.
    reopened = OwnedBudgetCounters(path, name=NAME)
    await reopened.close()


async def test_an_owner_is_refused_while_processes_share_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "ratelimits.db")
    shared = await open_ratelimit_counters(f"sqlite:///{path}")
    try:
        with pytest.raises(CounterFileInUse, match="already in use by another process"):
            OwnedRateLimitCounters(path)
    finally:
        await shared.close()


async def test_a_reader_beside_the_owner_sees_what_was_spent(tmp_path: Path) -> None:
    path = str(tmp_path / "budgets.db")
    owner = OwnedBudgetCounters(path, name=NAME)
    reader = SqliteBudgetCounters(path, name=NAME, lock=False)
    try:
        assert (await owner.reserve("a", [("k", 10, None)], 1e12))[0]
        await owner.settle("a", {"k": 9})
        assert await reader.counters(["k"]) == {"k": (9, 0)}
    finally:
        await reader.close()
        await owner.close()


async def test_rate_limit_windows_outlive_a_restart_but_leases_do_not(tmp_path: Path) -> None:
    path = str(tmp_path / "ratelimits.db")
    now, window = 1_700_000_040.0, 1_700_000_040 // 60
    counters = OwnedRateLimitCounters(path)
    checks = [("t/rpm", True, 3, 1), ("t/concurrent", False, 1, 1)]
    answer = await counters.admit(
        checks, now=now, window=window, weight=1.0, lease_id="a", lease_expires=now + 60
    )
    assert answer.admitted
    await counters.close()

    again = OwnedRateLimitCounters(path)
    try:
        # The window still counts the first request; its concurrency slot died with the
        # process, so one more fits under concurrentRequests: 1.
        answer = await again.admit(
            checks, now=now, window=window, weight=1.0, lease_id="b", lease_expires=now + 60
        )
        assert answer.admitted
        assert answer.used == (2.0, 1)
    finally:
        await again.close()
