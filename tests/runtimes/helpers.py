"""Helpers for supervisor tests: a fake server as the llamacpp command, quick timings, waits."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from corral.runtimes import (
    LlamaCppProvider,
    OpenAIUpstreamProvider,
    ReplicaSpec,
    ReplicaState,
    ReplicaStatus,
    RuntimeOption,
    RuntimeProvider,
    Supervisor,
    SupervisorSettings,
    VllmProvider,
)
from corral.runtimes.process import process_start_time

FAKE_SERVER = Path(__file__).with_name("fake_server.py")

QUICK = SupervisorSettings(
    backoff_initial=0.1,
    backoff_max=0.4,
    stable_after=30.0,
    drain_grace=0.3,
    stop_timeout=1.0,
    probe_interval=0.05,
    probe_timeout=1.0,
    upstream_interval=0.2,
    upstream_failures=2,
    failed_recheck=0.2,
    housekeeping_interval=0.1,
)


def fake_providers() -> dict[str, RuntimeProvider]:
    return {
        "llamacpp": LlamaCppProvider(launcher=(sys.executable, str(FAKE_SERVER))),
        "vllm": VllmProvider(),
        "openai": OpenAIUpstreamProvider(),
    }


def replica_spec(
    model_file: Path,
    *,
    name: str = "default.chat.fake.0",
    runtime: str = "llamacpp",
    options: Mapping[str, RuntimeOption] | None = None,
    readiness_timeout: float = 20.0,
    **extra: object,
) -> ReplicaSpec:
    return ReplicaSpec(
        name=name,
        namespace="default",
        endpoint="chat",
        model="fake-model",
        runtime=runtime,
        model_path=str(model_file),
        options=dict(options or {}),
        readiness_timeout=readiness_timeout,
        **extra,  # type: ignore[arg-type]
    )


class Recorder:
    """Collects every status ``on_change`` delivers."""

    def __init__(self) -> None:
        self.events: list[ReplicaStatus] = []

    def __call__(self, status: ReplicaStatus) -> None:
        self.events.append(status)

    def states(self, name: str) -> list[str]:
        return [event.state.value for event in self.events if event.name == name]


async def wait_for(
    supervisor: Supervisor,
    name: str,
    predicate: Callable[[ReplicaStatus], bool],
    *,
    within: float = 20.0,
) -> ReplicaStatus:
    """Poll until ``name``'s status satisfies ``predicate``; fail with the last status seen."""
    last: ReplicaStatus | None = None
    try:
        async with asyncio.timeout(within):
            while True:
                last = next((s for s in supervisor.statuses() if s.name == name), None)
                if last is not None and predicate(last):
                    return last
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"replica {name} never reached the expected status; last: {last}")


async def wait_gone(pid: int, *, within: float = 10.0) -> None:
    """Wait until process ``pid`` has exited (zombies count as exited)."""
    async with asyncio.timeout(within):
        while True:
            if process_start_time(pid) is None:
                return
            await asyncio.sleep(0.02)


async def wait_for_event(
    recorder: Recorder, name: str, state: ReplicaState, *, within: float = 10.0
) -> None:
    """Wait until ``on_change`` has delivered ``state`` for ``name``."""
    async with asyncio.timeout(within):
        while True:
            if state.value in recorder.states(name):
                return
            await asyncio.sleep(0.02)
