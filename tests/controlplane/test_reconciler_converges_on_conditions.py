"""A reconciler that reports a condition converges: one status write, then nothing to do."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from corral.api.errors import NotFound
from corral.api.objects import ObjectKey
from corral.controlplane import (
    Controller,
    Manager,
    Result,
    get_condition,
    is_true,
    set_condition,
)
from corral.store import Store

from .helpers import eventually, model, running, sample


def test_set_condition_keeps_transition_time_until_the_status_flips() -> None:
    status: dict[str, object] = {}
    assert set_condition(status, "Ready", False, "Loading", "downloading", 1)
    first = dict(get_condition(status, "Ready") or {})
    assert first["status"] == "False"
    assert first["lastTransitionTime"]

    assert not set_condition(status, "Ready", "False", "Loading", "downloading", 1)
    assert set_condition(status, "Ready", "False", "Verifying", "checking digest", 2)
    same_status = get_condition(status, "Ready") or {}
    assert same_status["lastTransitionTime"] == first["lastTransitionTime"]
    assert same_status["reason"] == "Verifying"
    assert same_status["observedGeneration"] == 2

    same_status["lastTransitionTime"] = "2000-01-01T00:00:00.000000Z"
    assert set_condition(status, "Ready", True, "Loaded", "", 2)
    flipped = get_condition(status, "Ready") or {}
    assert flipped["lastTransitionTime"] != "2000-01-01T00:00:00.000000Z"
    assert is_true(status, "Ready")
    assert not is_true(status, "Degraded")
    assert get_condition(None, "Ready") is None


def test_set_condition_refuses_a_status_that_is_not_true_false_or_unknown() -> None:
    with pytest.raises(ValueError, match="'yes'"):
        set_condition({}, "Ready", "yes", "Because")


async def test_a_reconciler_setting_ready_converges(
    store: Store, registry: CollectorRegistry
) -> None:
    calls: list[ObjectKey] = []

    async def reconcile(key: ObjectKey) -> Result:
        calls.append(key)
        try:
            obj = await store.get(*key)
        except NotFound:
            return Result()
        status = obj.setdefault("status", {})
        generation = obj["metadata"]["generation"]
        if set_condition(status, "Ready", True, "Loaded", "weights present", generation):
            status["observedGeneration"] = generation
            await store.update_status(obj)
        return Result()

    await store.create(model("llama"))
    manager = Manager(store, identity="test", registry=registry)
    manager.add(Controller("models", for_kind="Model", reconciler=reconcile))
    async with running(manager):
        await eventually(lambda: manager.ready, what="the manager to be ready")

        async def ready() -> bool:
            return is_true((await store.get("Model", "default", "llama")).get("status"), "Ready")

        await eventually(ready, what="Ready=True on the model")
        # The status write wakes the controller once more; that pass writes nothing.
        await eventually(lambda: len(calls) >= 2, what="the reconcile after the status write")
        settled = len(calls)
        await asyncio.sleep(0.3)
        assert len(calls) == settled, "the controller kept reconciling a converged object"
        written = await store.get("Model", "default", "llama")

        spec_change = dict(written)
        spec_change["spec"] = {"source": "file:///models/llama-v2.gguf"}
        await store.update(spec_change)

        async def observed_generation_2() -> bool:
            obj = await store.get("Model", "default", "llama")
            condition = get_condition(obj.get("status"), "Ready") or {}
            return condition.get("observedGeneration") == 2

        await eventually(observed_generation_2, what="the condition to follow generation 2")

    final = await store.get("Model", "default", "llama")
    assert final["status"]["observedGeneration"] == 2
    assert set(calls) == {ObjectKey("Model", "default", "llama")}
    assert sample(
        registry, "corral_controller_reconcile_total", controller="models", result="success"
    ) == len(calls)
