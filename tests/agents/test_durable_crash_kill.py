"""A worker process killed with SIGKILL mid-flight loses nothing and repeats nothing.

SQLite: one process runs 200 sessions (each: three calls of a counting tool, four model calls)
and is killed while they are in flight; a new process resumes them. Every session finishes,
no activity that was journaled as completed before the kill ran again, and the counting tool
(its side effect de-duplicated by idempotency key in its own SQLite file) counted each key
exactly once. Postgres: two worker processes share the sessions; one is killed and the other
resumes its sessions within 15 s (leases of 10 s).

The worker is :func:`worker_main` below, run in a child interpreter.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

TESTS = Path(__file__).resolve().parents[1]
TOOL_CALLS = 3


# -- the worker (child process) ----------------------------------------------------------------


class CountingTool:
    """Each call is logged (key, pid); the side effect (the counter) happens once per key."""

    def __init__(self, path: str, delay: float) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.delay = delay

    async def call(self, *target: Any, **_: Any) -> Any:
        key = target[3]
        await asyncio.sleep(random.uniform(self.delay, 5 * self.delay))
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO invocations VALUES (?, ?)", (key, os.getpid()))
        if db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (key,)).rowcount:
            db.execute("UPDATE counter SET n = n + 1")
        db.execute("COMMIT")
        return f"counted {key}"


class LoggingModel:
    """Calls the tool TOOL_CALLS times, then answers; logs (session:messages, pid)."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)

    async def __call__(self, request: dict[str, Any], token: str) -> Any:
        messages = request["messages"]
        self.db.execute(
            "INSERT INTO invocations VALUES (?, ?)", (f"{token}:m{len(messages)}", os.getpid())
        )
        await asyncio.sleep(random.uniform(0.0, 0.01))
        done = sum(1 for m in messages if m["role"] == "tool")
        if done < TOOL_CALLS:
            call = {
                "id": f"c{done}",
                "type": "function",
                "function": {"name": "count", "arguments": f'{{"n": {done}}}'},
            }
            return {"choices": [{"message": {"content": None, "tool_calls": [call]}}]}
        return {"choices": [{"message": {"content": f"counted {done}"}}]}


class SessionTokens:
    """The model token carries the session id, so the model can log which session called."""

    def model_token(self, session: Any, agent: Any) -> str:  # noqa: ARG002
        return str(session.id)

    def tool_token(self, session: Any, agent: Any, tool: str) -> str:  # noqa: ARG002
        return ""


async def _worker(
    url: str, effects: str, mode: str, sessions: int, worker: str, delay: float
) -> None:
    from corral.agents.config import AgentConfig, Approvals, StaticAgents, ToolBinding
    from corral.agents.runtime import AgentRuntime
    from corral.store.session_journal import open_session_journal

    count = ToolBinding("count", "counter", "count", "counts", {"type": "object"}, "write", 10)
    config = AgentConfig(
        "default",
        "counter",
        "chat",
        "Count.",
        {"count": count},
        approvals=Approvals(require=frozenset()),
    )
    journal = await open_session_journal(url)
    runtime = AgentRuntime(
        journal,
        StaticAgents(config),
        LoggingModel(effects),
        CountingTool(effects, delay),
        tokens=SessionTokens(),
        worker=worker,
        poll_seconds=0.5,
    )
    await runtime.start()
    if mode == "create":
        for _ in range(sessions):
            await runtime.create_session("default", "counter", message="count")
    print("ready", flush=True)
    while True:  # until every session of the journal has finished its turn
        await asyncio.sleep(0.1)
        page, _ = await journal.list_sessions("default", "counter", limit=1000)
        if page and all(row.state != "active" for row in page) and runtime.live_sessions == 0:
            break
    print("done", flush=True)
    await runtime.stop()
    await journal.close()


def worker_main(
    url: str, effects: str, mode: str, sessions: int, worker: str, delay: float
) -> None:
    asyncio.run(_worker(url, effects, mode, sessions, worker, delay))


# -- the test side ---------------------------------------------------------------------------------


def start_worker(
    url: str, effects: str, mode: str, sessions: int, worker: str, delay: float = 0.01
) -> Any:
    code = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); "
        "from agents.test_durable_crash_kill import worker_main; "
        f"worker_main({url!r}, {effects!r}, {mode!r}, {sessions}, {worker!r}, {delay})"
    )
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True
    )


def make_effects(path: Path) -> str:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(
        "CREATE TABLE invocations (key TEXT, pid INTEGER);"
        "CREATE TABLE seen (key TEXT PRIMARY KEY);"
        "CREATE TABLE counter (n INTEGER); INSERT INTO counter VALUES (0);"
    )
    db.close()
    return str(path)


def effects_count(path: str) -> int:
    db = sqlite3.connect(path, timeout=30)
    try:
        return int(db.execute("SELECT count(*) FROM seen").fetchone()[0])
    finally:
        db.close()


def completed_keys(rows: list[tuple[str, int, str, bytes]]) -> set[str]:
    """Keys of activities completed in a journal: tool keys, and model keys as the model logs
    them (session:m<number of messages it was sent>)."""
    from corral.agents.events import decode
    from corral.agents.orchestration import SessionState, fold

    done: set[str] = set()
    states: dict[str, SessionState] = {}
    scheduled: dict[tuple[str, int], str] = {}
    for sid, seq, kind, payload in rows:
        state = states.setdefault(sid, SessionState(sid))
        event = decode(kind, payload)
        if kind == "activity_scheduled":
            key = event.key if event.activity == "tool" else f"{sid}:m{len(state.messages) + 1}"
            scheduled[(sid, event.step)] = key
        elif kind == "activity_completed":
            # A model step is journaled by its result alone (no scheduled entry before it).
            done.add(scheduled.get((sid, event.step), f"{sid}:m{len(state.messages) + 1}"))
        fold(state, event, seq, 0.0)
    return done


def finish(process: Any) -> None:
    process.wait(30)
    process.stdout.close()


def wait_line(process: Any, expected: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.strip() == expected:
            return
        if not line and process.poll() is not None:
            raise AssertionError(f"worker exited ({process.returncode}) before {expected!r}")
    raise AssertionError(f"no {expected!r} from the worker within {seconds}s")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigkill_mid_flight_then_restart_finishes_every_session_once(tmp_path: Path) -> None:
    journal_file = tmp_path / "sessions.db"
    url = f"sqlite:///{journal_file}"
    effects = make_effects(tmp_path / "effects.db")
    first = start_worker(url, effects, "create", 200, "first")
    try:
        wait_line(first, "ready", 60)
        deadline = time.monotonic() + 60
        while effects_count(effects) < 150 and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(first.pid, signal.SIGKILL)
    finally:
        finish(first)
    assert first.returncode == -signal.SIGKILL
    db = sqlite3.connect(journal_file)
    at_kill = db.execute(
        "SELECT session_id, seq, kind, payload FROM agent_events ORDER BY session_id, seq"
    ).fetchall()
    unfinished = db.execute(
        "SELECT count(*) FROM agent_sessions WHERE state = 'active'"
    ).fetchone()[0]
    db.close()
    assert unfinished > 0, "the kill came after every session had finished; nothing was tested"
    done_at_kill = completed_keys(at_kill)

    second = start_worker(url, effects, "resume", 0, "second")
    try:
        wait_line(second, "done", 120)
    finally:
        finish(second)
    assert second.returncode == 0

    db = sqlite3.connect(journal_file)
    states = db.execute("SELECT state, count(*) FROM agent_sessions GROUP BY state").fetchall()
    finals = db.execute("SELECT payload FROM agent_events WHERE kind = 'final'").fetchall()
    after = db.execute(
        "SELECT session_id, seq, kind, payload FROM agent_events ORDER BY session_id, seq"
    ).fetchall()
    db.close()
    assert states == [("waiting_input", 200)]
    assert sorted({orjson.loads(p)["text"] for (p,) in finals}) == [f"counted {TOOL_CALLS}"]
    assert len(finals) == 200
    assert len(completed_keys(after)) == 200 * (2 * TOOL_CALLS + 1)

    effects_db = sqlite3.connect(effects)
    invocations = effects_db.execute("SELECT key, pid FROM invocations").fetchall()
    seen = {key for (key,) in effects_db.execute("SELECT key FROM seen")}
    (counter,) = effects_db.execute("SELECT n FROM counter").fetchone()
    effects_db.close()
    second_pid_keys = {key for key, pid in invocations if pid == second.pid}
    assert second_pid_keys, "the restarted worker ran nothing"
    assert not (second_pid_keys & done_at_kill), "a completed activity ran again after restart"
    tool_keys = {f"{sid}:{step}" for sid in {r[0] for r in after} for step in (2, 4, 6)}
    assert seen == tool_keys
    assert counter == 200 * TOOL_CALLS
    per_key: dict[str, int] = {}
    for key, _ in invocations:
        per_key[key] = per_key.get(key, 0) + 1
    assert max(per_key.values()) <= 2  # at most the one in flight at the kill ran twice


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(180)
def test_a_killed_postgres_worker_s_sessions_resume_on_another_within_15_s(
    tmp_path: Path, postgres_database: str
) -> None:
    from postgres_scratch import empty_database, run_in_own_loop

    run_in_own_loop(lambda: empty_database(postgres_database))
    effects = make_effects(tmp_path / "effects.db")
    first = start_worker(postgres_database, effects, "create", 40, "first", 0.4)
    second = None
    try:
        wait_line(first, "ready", 60)
        second = start_worker(postgres_database, effects, "resume", 0, "second")
        wait_line(second, "ready", 60)
        os.kill(first.pid, signal.SIGKILL)
        killed = time.monotonic()
        finish(first)

        async def owners() -> dict[str | None, int]:
            import asyncpg

            connection = await asyncpg.connect(postgres_database)
            try:
                rows = await connection.fetch(
                    "SELECT owner, count(*) FROM agent_sessions WHERE state = 'active' "
                    "GROUP BY owner"
                )
            finally:
                await connection.close()
            return {row[0]: row[1] for row in rows}

        before = run_in_own_loop(owners)
        assert before.get("first", 0) > 0, f"nothing was in flight on the killed worker: {before}"
        while True:
            now = run_in_own_loop(owners)
            if "first" not in now:
                break
            assert time.monotonic() - killed < 15, f"still leased to the dead worker: {now}"
            time.sleep(0.25)
        resumed_after = time.monotonic() - killed
        wait_line(second, "done", 120)
        finish(second)
        assert second.returncode == 0
        assert resumed_after < 15
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
            if process is not None and not process.stdout.closed:
                finish(process)
    effects_db = sqlite3.connect(effects)
    (counter,) = effects_db.execute("SELECT n FROM counter").fetchone()
    effects_db.close()
    assert counter == 40 * TOOL_CALLS
