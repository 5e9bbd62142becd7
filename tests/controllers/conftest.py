"""Fixtures: a real SQLite store and a Manager running the model-serving controllers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from corral.controllers import add_model_serving
from corral.controlplane import Manager
from corral.store import open_store

from .helpers import FAST, Plane


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Plane]:
    store = await open_store(f"sqlite:///{tmp_path / 'corral.db'}")
    manager = Manager(store, identity="test", registry=CollectorRegistry())
    supervisor = add_model_serving(manager, tmp_path, settings=FAST)
    stop = asyncio.Event()
    running = asyncio.create_task(manager.run(stop))
    try:
        yield Plane(store, supervisor)
    finally:
        stop.set()
        await running
        await supervisor.stop_all()
        await store.close()
