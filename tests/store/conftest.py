"""The store contract suite runs every behaviour test against both backends.

``target`` is a fresh, empty store location per test: a SQLite file under ``tmp_path``, or an
emptied PostgreSQL scratch database (``corral_t_<random>``, created per test module from
``CORRAL_TEST_POSTGRES_DSN`` and dropped afterwards), so tests never see each other's data.
An unreachable PostgreSQL fails the test with a message saying so: the suite never skips a
backend. The scratch database comes from ``tests/conftest.py`` (``postgres_database``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from corral.store import Store, WatchEvent, open_store
from postgres_scratch import empty_database

T = TypeVar("T")
EVENT_TIMEOUT = 10.0  # generous: the machine is shared; a hang still fails well before pytest's


@dataclass
class StoreTarget:
    """Where a test's store lives; ``open`` gives another handle on the same data."""

    backend: str
    url: str
    opened: list[Store] = field(default_factory=list)

    async def open(self, **options: Any) -> Store:
        store = await open_store(self.url, **options)
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()


@contextlib.asynccontextmanager
async def fresh_postgres_target(url: str) -> AsyncIterator[StoreTarget]:
    await empty_database(url)
    store_target = StoreTarget("postgres", url)
    try:
        yield store_target
    finally:
        await store_target.close_all()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def target(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[StoreTarget]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_database")
        async with fresh_postgres_target(url) as store_target:
            yield store_target
        return
    store_target = StoreTarget("sqlite", f"sqlite:///{tmp_path}/state.db")
    try:
        yield store_target
    finally:
        await store_target.close_all()


@pytest.fixture
async def postgres_target(postgres_database: str) -> AsyncIterator[StoreTarget]:
    """For the behaviours only the shared backend has (LISTEN/NOTIFY across processes)."""
    async with fresh_postgres_target(postgres_database) as store_target:
        yield store_target


@pytest.fixture
async def store(target: StoreTarget) -> Store:
    return await target.open()


def endpoint(name: str, namespace: str = "default", **fields: Any) -> dict[str, Any]:
    """A minimal object; keyword arguments become spec, ``labels=`` becomes metadata.labels."""
    labels = fields.pop("labels", None)
    finalizers = fields.pop("finalizers", None)
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels is not None:
        metadata["labels"] = labels
    if finalizers is not None:
        metadata["finalizers"] = finalizers
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Endpoint",
        "metadata": metadata,
        "spec": fields or {"replicas": 1},
    }


@pytest.fixture
def make() -> Any:
    return endpoint


async def next_events(watch: AsyncIterator[WatchEvent], count: int) -> list[WatchEvent]:
    """The next ``count`` events, failing (not hanging) when they do not come."""

    async def take() -> list[WatchEvent]:
        return [await anext(watch) for _ in range(count)]

    try:
        return await asyncio.wait_for(take(), EVENT_TIMEOUT)
    except TimeoutError:
        pytest.fail(f"expected {count} watch events within {EVENT_TIMEOUT}s", pytrace=False)


@pytest.fixture
def events() -> Any:
    return next_events
