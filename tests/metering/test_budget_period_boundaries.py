"""Budget periods are UTC calendar windows: counts start from zero at each boundary.

Day at 00:00 UTC, week on Monday 00:00 UTC, month on the 1st; ``total`` never resets. A hold
taken before a boundary is charged to the window it was taken in, even if settled after.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from budget_backends import FakeClock

from corral.metering import Amount, BudgetLedger, BudgetRule, CounterBackend, Refusal, Reservation
from corral.metering.periods import period_window


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("period", "moment", "label", "end"),
    [
        ("day", "2026-11-24T23:59:59.999999+00:00", "day:2026-11-24", "2026-11-25T00:00:00+00:00"),
        ("day", "2026-11-25T00:00:00+00:00", "day:2026-11-25", "2026-11-26T00:00:00+00:00"),
        # 01:30 in UTC+05:00 is still the previous day in UTC.
        ("day", "2026-11-25T01:30:00+05:00", "day:2026-11-24", "2026-11-25T00:00:00+00:00"),
        ("week", "2026-11-29T23:59:59+00:00", "week:2026-W48", "2026-11-30T00:00:00+00:00"),
        ("week", "2026-11-30T00:00:00+00:00", "week:2026-W49", "2026-12-07T00:00:00+00:00"),
        ("week", "2027-01-01T12:00:00+00:00", "week:2026-W53", "2027-01-04T00:00:00+00:00"),
        ("month", "2026-12-31T23:59:59+00:00", "month:2026-12", "2027-01-01T00:00:00+00:00"),
        ("month", "2028-02-29T10:00:00+00:00", "month:2028-02", "2028-03-01T00:00:00+00:00"),
        ("month", "2026-01-31T10:00:00+00:00", "month:2026-01", "2026-02-01T00:00:00+00:00"),
    ],
)
def test_windows_start_and_end_on_utc_calendar_boundaries(
    period: Any, moment: str, label: str, end: str
) -> None:
    assert period_window(period, at(moment)) == (label, at(end))


def test_a_total_budget_has_one_window_that_never_ends() -> None:
    assert period_window("total", datetime(2026, 1, 1, tzinfo=UTC)) == ("total", None)


def test_a_naive_time_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="needs an aware datetime"):
        period_window("day", datetime(2026, 1, 1))


def test_an_unknown_period_is_named() -> None:
    with pytest.raises(ValueError, match="unknown budget period 'fortnight'"):
        period_window("fortnight", datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=1))))  # type: ignore[arg-type]


@pytest.mark.parametrize("remembered", [False, True], ids=["list", "same-tuple"])
async def test_a_full_daily_budget_opens_again_at_midnight_utc(
    counters: CounterBackend, clock: FakeClock, remembered: bool
) -> None:
    # The gateway passes the same tuple for every request of a caller, and the ledger
    # remembers its counter lines: they must still move to the new day at midnight.
    daily = BudgetRule("ns", "daily", "team", "t", "day", True, 100, None)
    budgets: Sequence[BudgetRule] = (daily,) if remembered else [daily]
    clock.now = at("2026-11-24T23:59:50+00:00").timestamp()
    ledger = BudgetLedger(counters, clock=clock)
    spent = await ledger.reserve(budgets, Amount(90, 0))
    assert isinstance(spent, Reservation)
    await ledger.settle(spent, Amount(90, 0))

    refusal = await ledger.reserve(budgets, Amount(20, 0))
    assert isinstance(refusal, Refusal)
    assert "spent this day" in refusal.reason
    assert refusal.retry_after == pytest.approx(10.0)

    clock.advance(10)
    next_day = await ledger.reserve(budgets, Amount(20, 0))
    assert isinstance(next_day, Reservation)
    assert [line.key for line in next_day.lines] == ["ns/daily/day:2026-11-25/tokens"]
    assert (await ledger.settle(next_day, Amount(20, 0))).charged
    assert await ledger.usage(daily) == {"tokens": (20, 0)}


async def test_a_hold_taken_before_midnight_is_charged_to_its_own_day(
    counters: CounterBackend, clock: FakeClock
) -> None:
    daily = BudgetRule("ns", "daily", "team", "t", "day", True, 100, None)
    clock.now = at("2026-11-24T23:59:59+00:00").timestamp()
    ledger = BudgetLedger(counters, clock=clock)
    evening = await ledger.reserve([daily], Amount(80, 0))
    assert isinstance(evening, Reservation)

    clock.advance(5)
    await ledger.settle(evening, Amount(70, 0))

    assert await ledger.usage(daily) == {"tokens": (0, 0)}
    new_day = await ledger.reserve([daily], Amount(100, 0))
    assert isinstance(new_day, Reservation)
    yesterday = {line.key for line in evening.lines}
    assert await counters.counters(sorted(yesterday)) == dict.fromkeys(yesterday, (70, 0))
