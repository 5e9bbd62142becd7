"""Fixtures: the API server over a real SQLite store in a temp dir, in-process or on uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from corral.apiserver import create_app, ensure_builtin_namespaces
from corral.store import Store, open_store

from .helpers import TOKEN, running_uvicorn


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'corral.db'}")
    await ensure_builtin_namespaces(opened)
    yield opened
    await opened.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def app(store: Store, registry: CollectorRegistry) -> Starlette:
    return create_app(store, admin_token=TOKEN, registry=registry)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://corral.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as http:
        yield http


@pytest.fixture
async def live_url(app: Starlette) -> AsyncIterator[str]:
    async with running_uvicorn(app) as (url, _server):
        yield url


@pytest.fixture
async def live_client(live_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=live_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    ) as http:
        yield http
