"""Abandoned holds come back: a crashed gateway's reservations expire after the hold TTL.

A fake clock drives the ledger, so the TTL passes without waiting; every backend is tested.
"""

from __future__ import annotations

from budget_backends import FakeClock

from corral.metering import Amount, BudgetLedger, BudgetRule, CounterBackend, Refusal, Reservation


def budget() -> BudgetRule:
    return BudgetRule("ns", "b", "apikey", "key-1", "total", True, 1000, None)


async def test_a_crashed_gateways_hold_returns_after_the_ttl(
    counters: CounterBackend, clock: FakeClock
) -> None:
    crashed = BudgetLedger(counters, hold_ttl_s=30, clock=clock)
    survivor = BudgetLedger(counters, hold_ttl_s=30, clock=clock)
    abandoned = await crashed.reserve([budget()], Amount(900, 0))
    assert isinstance(abandoned, Reservation)

    clock.advance(29)
    assert await survivor.sweep_expired() == 0
    assert isinstance(await survivor.reserve([budget()], Amount(200, 0)), Refusal)

    clock.advance(2)
    # The refusal path sweeps by itself: no timer needed for the budget to come back.
    assert isinstance(await survivor.reserve([budget()], Amount(200, 0)), Reservation)
    assert await survivor.usage(budget()) == {"tokens": (0, 200)}


async def test_a_settle_arriving_after_expiry_still_charges_the_real_cost_once(
    counters: CounterBackend, clock: FakeClock
) -> None:
    ledger = BudgetLedger(counters, hold_ttl_s=10, clock=clock)
    slow = await ledger.reserve([budget()], Amount(500, 0))
    assert isinstance(slow, Reservation)
    clock.advance(11)
    assert await ledger.sweep_expired() == 1
    assert await ledger.sweep_expired() == 0

    late = await ledger.settle(slow, Amount(400, 0))
    assert late.charged
    assert late.late
    assert not (await ledger.settle(slow, Amount(400, 0))).charged
    assert not await ledger.release(slow)
    assert await ledger.usage(budget()) == {"tokens": (400, 0)}


async def test_an_expired_hold_that_is_released_charges_nothing(
    counters: CounterBackend, clock: FakeClock
) -> None:
    ledger = BudgetLedger(counters, hold_ttl_s=10, clock=clock)
    failed = await ledger.reserve([budget()], Amount(500, 0))
    assert isinstance(failed, Reservation)
    clock.advance(60)
    await ledger.sweep_expired()

    assert not await ledger.release(failed)
    assert await ledger.usage(budget()) == {"tokens": (0, 0)}
