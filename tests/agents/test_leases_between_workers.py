"""Leases: a live session belongs to one worker; a worker that stops renewing (it died) loses
its sessions to another worker once the lease lapses, and a worker that lost a lease cannot
write into the session any more."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from agents.conftest import (
    RecordingTools,
    ScriptedModel,
    agent,
    binding,
    reply,
    tool_calls,
    tool_results,
)
from corral.agents.config import StaticAgents
from corral.agents.events import SessionCreated, UserMessage, encode
from corral.agents.runtime import AgentRuntime, new_session_id
from corral.store.session_journal import SessionConflict, open_session_journal


def one_lookup(messages: list[dict[str, Any]]) -> Any:
    if not tool_results(messages):
        return tool_calls(("lookup", {}))
    return reply("found")


@pytest.mark.postgres
async def test_a_dead_workers_sessions_are_taken_over(postgres_database: str) -> None:
    from postgres_scratch import empty_database

    await empty_database(postgres_database)
    journal_a = await open_session_journal(postgres_database)
    journal_b = await open_session_journal(postgres_database)
    stuck = asyncio.Event()

    async def lookup() -> str:
        if not stuck.is_set():
            stuck.set()
            await asyncio.sleep(60)
        return "value"

    tools = RecordingTools(lookup=lookup)
    agents = StaticAgents(agent(binding("lookup", timeout=120)))
    a = AgentRuntime(
        journal_a,
        agents,
        ScriptedModel(one_lookup),
        tools,
        worker="a",
        lease_seconds=1.0,
        poll_seconds=0.1,
    )
    b = AgentRuntime(
        journal_b,
        agents,
        ScriptedModel(one_lookup),
        tools,
        worker="b",
        lease_seconds=1.0,
        poll_seconds=0.1,
    )
    try:
        await a.start()
        await b.start()
        sid = await a.create_session("default", "helper", message="go")
        await stuck.wait()
        assert (await journal_b.get(sid)).owner == "a"
        await asyncio.sleep(0.5)  # a renews: b must not take it while a lives
        assert (await journal_b.get(sid)).owner == "a"
        # a "dies": its tasks stop, nobody renews and nothing is released
        assert a._maintainer is not None
        a._maintainer.cancel()
        await a._runner.cancel_all()
        died = time.monotonic()
        assert await b.wait(sid, seconds=10) == "waiting_input"
        assert time.monotonic() - died < 5
        assert [call[3] for call in tools.calls] == [f"{sid}:2", f"{sid}:2"]
        with pytest.raises(SessionConflict):
            await journal_a.append(sid, [(sid, 99, "error", b"{}", time.time())], owner="a")
    finally:
        await b.stop()
        await journal_a.close()
        await journal_b.close()


async def test_a_second_sqlite_process_cannot_open_the_journal(tmp_path: Any) -> None:
    from corral.store.counter_backends import CounterFileInUse

    url = f"sqlite:///{tmp_path}/s.db"
    journal = await open_session_journal(url)
    try:
        # the lock is per open file description, so a second open in this process stands in
        # for a second process
        with pytest.raises(CounterFileInUse, match="one process runs the sessions"):
            await open_session_journal(url)
    finally:
        await journal.close()


async def test_a_restarted_sqlite_process_resumes_a_dead_owners_sessions_at_once(
    tmp_path: Any,
) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    journal = await open_session_journal(url)
    sid = new_session_id(time.time())
    now = time.time()
    rows = [
        (sid, 1, *encode(SessionCreated("default", "helper", {"steps": 5, "seconds": 60})), now),
        (sid, 2, *encode(UserMessage("hi")), now),
    ]
    await journal.create(
        sid,
        "default",
        "helper",
        rows,
        state="active",
        owner="dead-pid",
        lease_seconds=3600,
        now=now,
    )
    runtime = AgentRuntime(
        journal,
        StaticAgents(agent()),
        ScriptedModel(lambda _m: reply("hello")),
        RecordingTools(),
        poll_seconds=0.05,
    )
    try:
        await runtime.start()
        assert await runtime.wait(sid, seconds=5) == "waiting_input"
    finally:
        await runtime.stop()
        await journal.close()
