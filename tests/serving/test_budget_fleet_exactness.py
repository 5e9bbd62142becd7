"""Four gateway processes, one hard Budget, 400 requests at once: never overspent.

Four ``corral serve --role gateway`` processes share one PostgreSQL store and its budget
counters; 400 concurrent requests of one team's key, spread over them, meet a Budget that holds
about 100 worst cases (``budget_fleet``). What the ledger settled stays within the limit and
equals, token for token, the usage of the answers the clients got (nothing charged twice,
nothing missed); every other answer is a 429 ``budget_exceeded`` naming the budget. Needs
PostgreSQL (CORRAL_TEST_POSTGRES_DSN): it fails, never skips, when that is unreachable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postgres_scratch import create_database, drop_database

from .budget_fleet import run_fleet
from .budget_upstream import metered_upstream

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
async def database() -> AsyncIterator[str]:
    name, url = await create_database("corral_budget")
    try:
        yield url
    finally:
        await drop_database(name)


@pytest.mark.timeout(300)
async def test_four_gateways_never_overspend_a_shared_hard_budget(
    database: str, tmp_path: Path
) -> None:
    with metered_upstream(delay_s=0.05) as upstream:
        outcome = await run_fleet(database, upstream.base_url, tmp_path)
        upstream_calls = upstream.calls()

    assert outcome.successes + len(outcome.refusals) == 400
    assert outcome.successes >= 100  # the holds of ~100 fit at once, settles free some more
    assert outcome.refusals, "the budget allows about 100 requests, not 400"
    assert upstream_calls == outcome.successes  # a refused request never reached the upstream
    assert outcome.spent <= outcome.limit
    assert outcome.over_limit == 0
    # Token for token what the clients were answered: nothing charged twice, nothing missed.
    assert outcome.spent == outcome.answered_tokens
    assert outcome.settled_reservations == outcome.successes
    assert outcome.held == 0
    budget_named = [
        message for *_rest, message in outcome.refusals if "budget default/fleet-" in message
    ]
    assert len(budget_named) == len(outcome.refusals)
    for status, code, retry_after, message in outcome.refusals:
        assert (status, code) == (429, "budget_exceeded"), message
        # A total budget never resets: only requests in flight holding it say when to retry.
        assert retry_after in (None, "1"), message
