"""Reserve, settle and release against every counter backend: holds, exact charges, atomicity.

The same behaviour is required of PostgreSQL, Redis and SQLite; each test runs on all three.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from corral.metering import (
    Amount,
    BudgetLedger,
    BudgetRule,
    CounterBackend,
    Refusal,
    Reservation,
    UnknownReservation,
)


def rule(
    name: str, *, tokens: int | None = None, usd: int | None = None, hard: bool = True
) -> BudgetRule:
    return BudgetRule("team-a", name, "team", "search", "total", hard, tokens, usd)


async def granted(ledger: BudgetLedger, rules: list[BudgetRule], amount: Amount) -> Reservation:
    outcome = await ledger.reserve(rules, amount)
    assert isinstance(outcome, Reservation), outcome
    return outcome


async def test_a_hold_counts_until_settled_then_only_the_actual_cost_is_charged(
    counters: CounterBackend,
) -> None:
    ledger = BudgetLedger(counters)
    budget = rule("monthly", tokens=1000, usd=50_000)
    reservation = await granted(ledger, [budget], Amount(600, 30_000))
    assert await ledger.usage(budget) == {"tokens": (0, 600), "usd": (0, 30_000)}

    settlement = await ledger.settle(reservation, Amount(250, 12_345))

    assert settlement.charged
    assert not settlement.late
    assert await ledger.usage(budget) == {"tokens": (250, 0), "usd": (12_345, 0)}


async def test_settling_twice_charges_once_even_when_both_race(counters: CounterBackend) -> None:
    ledger = BudgetLedger(counters)
    budget = rule("monthly", tokens=1000)
    reservation = await granted(ledger, [budget], Amount(100, 0))

    outcomes = await asyncio.gather(*(ledger.settle(reservation, Amount(70, 0)) for _ in range(3)))

    assert sorted(outcome.charged for outcome in outcomes) == [False, False, True]
    assert await ledger.usage(budget) == {"tokens": (70, 0)}
    assert not (await ledger.settle(reservation, Amount(70, 0))).charged
    assert await ledger.usage(budget) == {"tokens": (70, 0)}


async def test_a_hard_budget_refuses_what_would_pass_its_limit_and_says_why(
    counters: CounterBackend,
) -> None:
    ledger = BudgetLedger(counters)
    budget = rule("monthly", tokens=1000)
    first = await granted(ledger, [budget], Amount(700, 0))

    in_flight = await ledger.reserve([budget], Amount(400, 0))
    assert isinstance(in_flight, Refusal)
    assert in_flight.budget == "team-a/monthly"
    assert "700 tokens held by requests in flight" in in_flight.reason
    assert in_flight.retry_after is not None
    assert in_flight.retry_after > 0

    await ledger.settle(first, Amount(650, 0))
    spent_out = await ledger.reserve([budget], Amount(400, 0))
    assert isinstance(spent_out, Refusal)
    assert "650 tokens of 1000 tokens spent overall" in spent_out.reason
    assert spent_out.retry_after is None  # a total budget never resets
    assert isinstance(await ledger.reserve([budget], Amount(350, 0)), Reservation)


async def test_a_request_bigger_than_the_whole_limit_is_refused_without_retry(
    counters: CounterBackend,
) -> None:
    ledger = BudgetLedger(counters)
    refusal = await ledger.reserve([rule("tiny", usd=1_000_000)], Amount(10, 2_000_000))
    assert isinstance(refusal, Refusal)
    assert "more than the whole overall limit of $1.000000" in refusal.reason
    assert refusal.retry_after is None


async def test_one_refusing_budget_means_no_budget_holds_anything(
    counters: CounterBackend,
) -> None:
    ledger = BudgetLedger(counters)
    roomy, tight = rule("roomy", tokens=10_000, usd=10_000), rule("tight", tokens=100)
    await granted(ledger, [tight], Amount(80, 0))

    refusal = await ledger.reserve([roomy, tight], Amount(50, 500))

    assert isinstance(refusal, Refusal)
    assert refusal.budget == "team-a/tight"
    assert await ledger.usage(roomy) == {"tokens": (0, 0), "usd": (0, 0)}
    assert await ledger.usage(tight) == {"tokens": (0, 80)}


async def test_release_returns_the_hold_once_and_charges_nothing(counters: CounterBackend) -> None:
    ledger = BudgetLedger(counters)
    budget = rule("monthly", tokens=1000)
    reservation = await granted(ledger, [budget], Amount(300, 0))

    assert await ledger.release(reservation)
    assert not await ledger.release(reservation)
    assert not (await ledger.settle(reservation, Amount(300, 0))).charged
    assert await ledger.usage(budget) == {"tokens": (0, 0)}


async def test_a_soft_budget_alerts_but_never_refuses(counters: CounterBackend) -> None:
    seen: list[str] = []
    ledger = BudgetLedger(counters, on_alert=lambda alert: seen.append(alert.kind))
    budget = rule("soft", tokens=100, hard=False)

    quiet = await granted(ledger, [budget], Amount(60, 0))
    assert quiet.alerts == ()
    loud = await granted(ledger, [budget], Amount(60, 0))
    assert [alert.kind for alert in loud.alerts] == ["projected"]

    assert (await ledger.settle(quiet, Amount(60, 0))).alerts == ()
    crossing = await ledger.settle(loud, Amount(60, 0))
    assert [alert.message for alert in crossing.alerts] == [
        "soft budget team-a/soft passed its overall limit: 120 tokens of 100 tokens"
    ]
    over = await granted(ledger, [budget], Amount(500, 0))
    assert (await ledger.settle(over, Amount(500, 0))).alerts == ()  # alerted once, at the crossing
    assert seen == ["projected", "exceeded", "projected"]
    assert await ledger.usage(budget) == {"tokens": (620, 0)}


async def test_an_unknown_reservation_is_an_error_not_a_silent_no_op(
    counters: CounterBackend,
) -> None:
    ledger = BudgetLedger(counters)
    lines = tuple(rule("x", tokens=5).counter_lines(datetime.now(UTC)))
    made_elsewhere = Reservation("0" * 32, Amount(1, 0), lines, 0.0)
    with pytest.raises(UnknownReservation, match=r"no reservation 0+ in the budget ledger"):
        await ledger.settle(made_elsewhere, Amount(1, 0))
    with pytest.raises(UnknownReservation):
        await ledger.release(made_elsewhere)


async def test_no_budgets_means_nothing_to_hold(counters: CounterBackend) -> None:
    ledger = BudgetLedger(counters)
    reservation = await granted(ledger, [], Amount(10**9, 10**9))
    assert (await ledger.settle(reservation, Amount(5, 5))).charged
