"""Where the budget extension keeps its counters, and its settings from the environment."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from corral.server.budget_extension import BudgetExtension, counters_url
from corral.server.config import CONTROLLERS, GATEWAY, ServerConfig
from corral.server.extensions import ServerContext


def context(
    tmp_path: Path, store_url: str, roles: frozenset[str] = frozenset({GATEWAY})
) -> ServerContext:
    config = ServerConfig(port=0, state_dir=tmp_path, store_url=store_url, roles=roles)
    return ServerContext(
        config=config,
        state_dir=tmp_path,
        store=None,  # type: ignore[arg-type]  # not opened by what these tests touch
        store_url=store_url,
        stop=asyncio.Event(),
    )


def test_counters_follow_the_store_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CORRAL_COUNTERS_URL", raising=False)
    sqlite = context(tmp_path, f"sqlite:///{tmp_path}/corral.db")
    assert counters_url(sqlite) == f"sqlite:///{tmp_path.resolve()}/budgets.db"
    postgres = context(tmp_path, "postgresql+asyncpg://u:p@db:5432/corral?sslmode=require")
    assert counters_url(postgres) == "postgresql://u:p@db:5432/corral?sslmode=require"
    monkeypatch.setenv("CORRAL_COUNTERS_URL", "redis://cache:6379/2")
    assert counters_url(postgres) == "redis://cache:6379/2"
    assert counters_url(sqlite) == "redis://cache:6379/2"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CORRAL_BUDGET_HOLD_TTL_S", "0", "CORRAL_BUDGET_HOLD_TTL_S='0': expected a number"),
        ("CORRAL_BUDGET_HOLD_TTL_S", "soon", "expected a number of seconds > 0"),
        ("CORRAL_BUDGET_PROMPT_ESTIMATE", "words", "expected chars or bytes"),
    ],
)
async def test_bad_settings_stop_the_start_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    extension = BudgetExtension(context(tmp_path, f"sqlite:///{tmp_path}/corral.db"))
    try:
        with pytest.raises(ValueError, match=message):
            await extension.start()
    finally:
        await extension.aclose()


async def test_unreachable_counters_stop_the_start_naming_them_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_COUNTERS_URL", "redis://:hunter2@127.0.0.1:1/0")
    extension = BudgetExtension(context(tmp_path, f"sqlite:///{tmp_path}/corral.db"))
    try:
        with pytest.raises(ValueError, match="cannot open the budget counters at") as failed:
            await extension.start()
        assert "hunter2" not in str(failed.value)
    finally:
        await extension.aclose()


async def test_a_process_without_the_gateway_or_api_server_takes_no_part(tmp_path: Path) -> None:
    extension = BudgetExtension(
        context(tmp_path, f"sqlite:///{tmp_path}/corral.db", frozenset({CONTROLLERS}))
    )
    await extension.start()
    assert extension.ready
    assert extension.gateway_stages() == ()
    assert extension.api_routes() == []
    assert not (tmp_path / "budgets.db").exists()
    await extension.aclose()
