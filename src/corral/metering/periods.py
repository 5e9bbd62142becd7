"""Budget periods: which UTC calendar window a moment falls in, and when it ends.

The window's label is part of every counter key (``day:2026-11-24``), so a new period starts
from zero without anyone resetting anything, in every gateway process at the same instant.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

Period = Literal["day", "week", "month", "total"]


def period_window(period: Period, now: datetime) -> tuple[str, datetime | None]:
    """The label of the window ``now`` falls in and the instant it ends (None: never)."""
    if now.tzinfo is None:
        raise ValueError(f"period_window needs an aware datetime, got naive {now.isoformat()}")
    moment = now.astimezone(UTC)
    day_start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return f"day:{day_start:%Y-%m-%d}", day_start + timedelta(days=1)
    if period == "week":
        week_start = day_start - timedelta(days=day_start.weekday())
        year, week, _ = week_start.isocalendar()
        return f"week:{year}-W{week:02d}", week_start + timedelta(days=7)
    if period == "month":
        month_start = day_start.replace(day=1)
        next_month = (month_start + timedelta(days=32)).replace(day=1)
        return f"month:{month_start:%Y-%m}", next_month
    if period == "total":
        return "total", None
    raise ValueError(f"unknown budget period {period!r}: use day, week, month or total")
