"""Shared helpers for the controller-runtime tests: objects, running a manager, waiting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from prometheus_client import CollectorRegistry

from corral.api.objects import API_VERSION, Object
from corral.controlplane import Manager

WAIT_LIMIT_S = 20.0


def model(name: str, namespace: str = "default", **metadata: Any) -> Object:
    return {
        "apiVersion": API_VERSION,
        "kind": "Model",
        "metadata": {"name": name, "namespace": namespace, **metadata},
        "spec": {"source": f"file:///models/{name}.gguf"},
    }


def owned_by(owner: Object, *, controller: bool = True) -> list[dict[str, Any]]:
    meta = owner["metadata"]
    return [
        {
            "apiVersion": API_VERSION,
            "kind": owner["kind"],
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": controller,
        }
    ]


async def eventually(check: Callable[[], Any], *, what: str, limit_s: float = WAIT_LIMIT_S) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; fail after the limit."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"gave up after {limit_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(manager: Manager) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``manager`` in the background; stop it and surface its errors on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_LIMIT_S)


def sample(registry: CollectorRegistry, metric: str, /, **labels: str) -> float:
    value = registry.get_sample_value(metric, labels)
    return 0.0 if value is None else value
