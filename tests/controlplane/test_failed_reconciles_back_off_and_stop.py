"""What a reconcile's outcome turns into: backoff, requeue_after, terminal errors, survival."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest
from prometheus_client import CollectorRegistry

from corral.api.objects import ObjectKey
from corral.controlplane import Controller, Manager, Result, TerminalError
from corral.controlplane.ratelimit import ExponentialBackoff, RetryRateLimiter, TokenBucket
from corral.store import Store

from .helpers import eventually, model, running, sample

LLAMA = ObjectKey("Model", "default", "llama")
RECONCILE_LOGGER = "corral.controlplane.reconcile"


def test_backoff_doubles_from_5ms_to_a_5_minute_cap_and_resets() -> None:
    backoff = ExponentialBackoff()
    delays = [backoff.when(LLAMA) for _ in range(20)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert all(later >= earlier for earlier, later in itertools.pairwise(delays))
    assert delays[-1] == 300.0
    assert backoff.when(ObjectKey("Model", "default", "other")) == 0.005, "backoff is per key"
    backoff.forget(LLAMA)
    assert backoff.when(LLAMA) == 0.005


def test_the_overall_bucket_slows_a_storm_of_retries() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=3, clock=lambda: now[0])
    limiter = RetryRateLimiter(ExponentialBackoff(base=0.001), bucket)
    keys = [ObjectKey("Model", "default", f"m{i}") for i in range(5)]
    delays = [limiter.when(key) for key in keys]
    assert delays[:3] == [0.001, 0.001, 0.001]
    assert delays[3] == pytest.approx(0.1)
    assert delays[4] == pytest.approx(0.2)
    now[0] = 10.0
    assert limiter.when(keys[0]) == 0.002, "a refilled bucket leaves only the key's own backoff"


def test_result_refuses_a_negative_or_non_numeric_delay() -> None:
    for bad in (-1, float("nan"), "5", True):
        with pytest.raises(ValueError, match="requeue_after"):
            Result(requeue_after=bad)  # type: ignore[arg-type]


async def test_errors_retry_with_growing_backoff_that_success_resets(
    store: Store, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=RECONCILE_LOGGER)
    failures_left = [3]

    async def reconcile(_key: ObjectKey) -> Result:
        if failures_left[0] > 0:
            failures_left[0] -= 1
            raise ConnectionError("upstream unavailable")
        return Result()

    await store.create(model("llama"))
    manager = Manager(store, identity="test", registry=registry)
    manager.add(Controller("models", for_kind="Model", reconciler=reconcile))
    ok = {"controller": "models", "result": "success"}
    async with running(manager):
        await eventually(
            lambda: sample(registry, "corral_controller_reconcile_total", **ok) == 1,
            what="success after three failures",
        )
        failures_left[0] = 1
        current = await store.get(*LLAMA)
        current["metadata"]["labels"] = {"touched": "yes"}
        await store.update(current)
        await eventually(
            lambda: sample(registry, "corral_controller_reconcile_total", **ok) == 2,
            what="success after one more failure",
        )

    records = [r for r in caplog.records if r.name == RECONCILE_LOGGER]
    outcomes = [(r.__dict__["result"], r.__dict__["retries"]) for r in records]
    assert outcomes == [
        ("error", 0),
        ("error", 1),
        ("error", 2),
        ("success", 3),
        ("error", 0),  # the success reset the key's backoff
        ("success", 1),
    ]
    assert all(r.__dict__["key"] == str(LLAMA) for r in records)
    assert all(r.__dict__["controller"] == "models" for r in records)
    assert sample(registry, "corral_workqueue_retries_total", name="models") == 4
    assert (
        sample(registry, "corral_controller_reconcile_duration_seconds_count", controller="models")
        == 6
    )


async def test_requeue_after_reconciles_again_without_an_event(
    store: Store, registry: CollectorRegistry
) -> None:
    calls: list[float] = []

    async def reconcile(_key: ObjectKey) -> Result:
        calls.append(asyncio.get_running_loop().time())
        return Result(requeue_after=0.05) if len(calls) < 4 else Result()

    await store.create(model("llama"))
    manager = Manager(store, identity="test", registry=registry)
    manager.add(Controller("models", for_kind="Model", reconciler=reconcile))
    async with running(manager):
        await eventually(lambda: len(calls) == 4, what="three requeues")
        await asyncio.sleep(0.3)
    assert len(calls) == 4
    assert all(later - earlier >= 0.05 for earlier, later in itertools.pairwise(calls))
    by_result = {
        result: sample(
            registry, "corral_controller_reconcile_total", controller="models", result=result
        )
        for result in ("requeue_after", "success", "error")
    }
    assert by_result == {"requeue_after": 3, "success": 1, "error": 0}


async def test_a_terminal_error_is_recorded_and_not_retried(
    store: Store, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[ObjectKey] = []

    async def reconcile(key: ObjectKey) -> Result:
        calls.append(key)
        if len(calls) == 1:
            raise TerminalError("spec.source names a scheme this node cannot fetch")
        return Result()

    await store.create(model("llama"))
    manager = Manager(store, identity="test", registry=registry)
    manager.add(Controller("models", for_kind="Model", reconciler=reconcile))
    async with running(manager):
        await eventually(lambda: calls, what="the first reconcile")
        await asyncio.sleep(0.3)  # a retry at 5 ms backoff would long have happened
        assert len(calls) == 1
        current = await store.get(*LLAMA)
        current["metadata"]["labels"] = {"fixed": "yes"}
        await store.update(current)
        await eventually(lambda: len(calls) == 2, what="a reconcile after the object changed")

    def count(result: str) -> float:
        return sample(
            registry, "corral_controller_reconcile_total", controller="models", result=result
        )

    assert (count("terminal_error"), count("error"), count("success")) == (1, 0, 1)
    terminal = [r for r in caplog.records if r.__dict__.get("result") == "terminal_error"]
    assert len(terminal) == 1
    assert "cannot fetch" in terminal[0].__dict__["error"]


async def test_workers_survive_unexpected_exceptions_and_bad_return_values(
    store: Store, registry: CollectorRegistry
) -> None:
    seen: list[str] = []

    async def reconcile(key: ObjectKey) -> Result:
        seen.append(key.name)
        if key.name == "crash":
            raise KeyError("a bug in the reconciler")
        if key.name == "sloppy":
            return None  # type: ignore[return-value]
        return Result()

    for name in ("crash", "sloppy"):
        await store.create(model(name))
    manager = Manager(store, identity="test", registry=registry)
    manager.add(Controller("models", for_kind="Model", reconciler=reconcile))
    async with running(manager):
        await eventually(
            lambda: seen.count("crash") >= 2 and seen.count("sloppy") >= 2,
            what="both broken keys retried",
        )
        await store.create(model("fine"))
        await eventually(lambda: "fine" in seen, what="the single worker to go on working")
    assert sample(
        registry, "corral_controller_reconcile_total", controller="models", result="success"
    ) == seen.count("fine")
