"""``open_budget_counters`` picks the backend from the URL and refuses what it cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.store.budget_ledger import SqliteBudgetCounters, open_budget_counters


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/x", "use postgresql://user@host/db, redis://host:6379/0 or sqlite:///"),
        ("state.db", "use postgresql://"),
        ("sqlite://", "write sqlite:///relative.db or sqlite:////abs.db"),
    ],
)
async def test_a_url_no_backend_understands_is_refused_with_examples(
    url: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await open_budget_counters(url)


async def test_a_bad_counter_name_is_refused_before_it_reaches_sql(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"budget counter name 'x; DROP TABLE y'"):
        await open_budget_counters(f"sqlite:///{tmp_path / 'b.db'}", name="x; DROP TABLE y")


async def test_a_sqlite_url_opens_the_file_it_names(tmp_path: Path) -> None:
    counters = await open_budget_counters(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        assert isinstance(counters, SqliteBudgetCounters)
        assert (tmp_path / "b.db").exists()
        assert await counters.counters(["never/charged"]) == {"never/charged": (0, 0)}
    finally:
        await counters.close()
