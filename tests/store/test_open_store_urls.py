"""``open_store`` picks the backend from the URL and explains a URL or option it cannot use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corral.store import PostgresStore, SqliteStore, open_store


async def test_sqlite_urls_take_relative_and_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Any
):
    monkeypatch.chdir(tmp_path)
    relative = await open_store("sqlite:///nested/dir/state.db")
    try:
        assert isinstance(relative, SqliteStore)
        await relative.create(make("a"))
    finally:
        await relative.close()
    assert (tmp_path / "nested" / "dir" / "state.db").exists()
    absolute = await open_store(f"sqlite:///{tmp_path}/nested/dir/state.db")
    try:
        assert (await absolute.get("Endpoint", "default", "a"))["metadata"]["name"] == "a"
    finally:
        await absolute.close()


async def test_postgres_urls_open_the_postgres_backend(postgres_target: Any):
    for scheme in ("postgresql", "postgres"):
        url = postgres_target.url.replace("postgresql://", f"{scheme}://", 1)
        store = await open_store(url, max_pool_size=2)
        try:
            assert isinstance(store, PostgresStore)
            assert await store.current_resource_version() == 0
        finally:
            await store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("state.db", "no scheme"),
        ("mysql://localhost/db", "unknown scheme 'mysql'"),
        ("sqlite://host/state.db", "has no host"),
        ("sqlite:///", "expected a file path"),
        ("sqlite:///state.db?mode=ro", "expected a file path"),
        ("postgresql://host:notaport/db", "port"),
    ],
)
async def test_bad_urls_are_value_errors_that_show_the_url(url: str, message: str):
    with pytest.raises(ValueError, match=message) as caught:
        await open_store(url)
    assert repr(url) in str(caught.value)


async def test_unknown_options_are_value_errors_listing_the_known_ones(tmp_path: Path):
    with pytest.raises(ValueError, match=r"unknown sqlite store option.*retention.*known:"):
        await open_store(f"sqlite:///{tmp_path}/s.db", retention=5)
    with pytest.raises(ValueError, match="event_retention must be at least 1"):
        await open_store(f"sqlite:///{tmp_path}/s.db", event_retention=0)


async def test_unreachable_postgres_is_a_connection_error_without_the_password():
    with pytest.raises(ConnectionError, match="cannot connect to PostgreSQL") as caught:
        await open_store("postgresql://user:secret@127.0.0.1:1/db", connect_timeout=2)
    assert "secret" not in str(caught.value)


async def test_a_closed_store_refuses_work(target: Any, make: Any):
    store = await target.open()
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.create(make("a"))
    await store.close()  # closing twice is harmless
