"""Fixtures of the agent runtime suites.

- ``journal``: a session journal on SQLite or on a PostgreSQL scratch database (emptied per
  test; the database itself is per module, see tests/conftest.py).
- ``make_runtime``: started runtimes on that journal, stopped after the test.
- A scripted model (answers computed from the conversation, like a transport seam in httpx
  tests) and recording tools, so multi-step flows run without a network.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from corral.agents.config import AgentConfig, Approvals, Limits, StaticAgents, ToolBinding
from corral.agents.runtime import AgentRuntime
from corral.store.session_journal import open_session_journal
from postgres_scratch import empty_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def journal_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_database")
        await empty_database(url)
        yield url
    else:
        yield f"sqlite:///{tmp_path}/sessions.db"


@pytest.fixture
async def journal(journal_url: str) -> AsyncIterator[Any]:
    store = await open_session_journal(journal_url)
    try:
        yield store
    finally:
        await store.close()


_workers = itertools.count()


@pytest.fixture
async def make_runtime(journal: Any) -> AsyncIterator[Any]:
    """``await make_runtime(agents, model, tools, **options)``."""
    made: list[AgentRuntime] = []

    async def make(agents: Any, model: Any, tools: Any, **options: Any) -> AgentRuntime:
        directory = agents if isinstance(agents, StaticAgents) else StaticAgents(*agents)
        options.setdefault("worker", f"w{next(_workers)}")
        options.setdefault("poll_seconds", 0.05)
        runtime = AgentRuntime(journal, directory, model, tools, **options)
        await runtime.start()
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        await runtime.stop()


def reply(text: str, tokens: int = 10) -> dict[str, Any]:
    return {
        "choices": [{"message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": tokens // 2, "completion_tokens": tokens - tokens // 2},
    }


def tool_calls(*calls: tuple[str, Any], tokens: int = 10) -> dict[str, Any]:
    """A model message calling ``(function, arguments)`` pairs (arguments: dict or raw text)."""
    return {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"c{index}",
                            "type": "function",
                            "function": {
                                "name": name,
                                "arguments": args
                                if isinstance(args, str)
                                else orjson.dumps(args).decode(),
                            },
                        }
                        for index, (name, args) in enumerate(calls)
                    ],
                }
            }
        ],
        "usage": {"total_tokens": tokens},
    }


class ScriptedModel:
    """Answers from ``script(messages) -> response``; remembers every request."""

    def __init__(self, script: Callable[[list[dict[str, Any]]], Any]) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, request: dict[str, Any], token: str) -> Any:  # noqa: ARG002
        self.requests.append(request)
        answer = self.script(request["messages"])
        if isinstance(answer, BaseException):
            raise answer
        return answer


def tool_results(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "tool"]


class RecordingTools:
    """Tools by MCP name; records (tool, name, arguments, key) of every call."""

    def __init__(self, **handlers: Callable[..., Any]) -> None:
        self.handlers = handlers
        self.calls: list[tuple[str, str, dict[str, Any], str]] = []

    async def call(
        self,
        tool: str,
        name: str,
        arguments: dict[str, Any],
        idempotency_key: str,
        token: str,  # noqa: ARG002
    ) -> Any:
        self.calls.append((tool, name, arguments, idempotency_key))
        result = self.handlers[name](**arguments)
        if asyncio.iscoroutine(result):
            result = await result
        return result


def binding(function: str, *, risk: str = "read", timeout: float = 5.0) -> ToolBinding:
    return ToolBinding(
        function,
        "toolbox",
        function,
        f"{function} tool",
        {"type": "object"},
        risk,
        timeout,  # type: ignore[arg-type]
    )


def agent(
    *tools: ToolBinding,
    name: str = "helper",
    memory: str = "conversation",
    approvals: Approvals | None = None,
    **limits: Any,
) -> AgentConfig:
    return AgentConfig(
        "default",
        name,
        "chat",
        "You help.",
        {t.function: t for t in tools},
        Limits(**limits),
        approvals or Approvals(),
        memory,  # type: ignore[arg-type]
    )


async def kinds(runtime: AgentRuntime, session_id: str) -> list[str]:
    return [event["kind"] for event in (await runtime.get(session_id)).events]
