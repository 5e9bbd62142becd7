"""Two ``corral serve --role agents`` processes share the sessions on PostgreSQL: one is killed
with SIGKILL while its sessions wait on a slow tool, and the other resumes them within 15 s.

Everything is the real thing: a control plane (``corral serve --role
apiserver,controllers,gateway`` on a fresh PostgreSQL store), two agents workers sharing
``CORRAL_SESSIONS_URL`` (a second fresh database) and calling models through
``CORRAL_GATEWAY_URL``, an ``openai``-runtime Endpoint in front of a scripted upstream (it asks
for the tool until the conversation holds enough tool results), and a stdio MCP Tool each
worker spawns itself (``mcp_servers/slow_counter.py``: it logs every call with the worker that
made it and counts each idempotency key once). Sessions start over worker A's sessions API; A
dies mid-flight; then:

- worker B holds (or has finished) every session within 15 s of the kill;
- every session finishes its turn with the final answer (about 3 s after the takeover here;
  the test allows 60 s on a busy machine);
- no tool step that was journaled as completed before the kill ran again, and the tool's side
  effect happened once per key (only the call in flight at the kill may arrive twice).

Needs PostgreSQL (CORRAL_TEST_POSTGRES_DSN); it fails, never skips, when it is unreachable.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet

from agents.scripted_upstream import scripted_upstream
from postgres_scratch import create_database, drop_database, run_in_own_loop
from serving.helpers import CORRAL, endpoint, is_ready, manifest

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]

SLOW_COUNTER = Path(__file__).resolve().parent / "mcp_servers" / "slow_counter.py"
AGENT = "spiffe://corral.local/ns/default/agent/counter"
POLICIES = f"""
permit (principal == Agent::"{AGENT}", action == Action::"invoke",
        resource == Endpoint::"default/counting-chat");
permit (principal == Agent::"{AGENT}", action == Action::"call",
        resource == Tool::"default/slow-counter");
"""
SESSIONS = 6
TOOL_CALLS = 2
TOOL_DELAY_S = 1.5
TAKEOVER_DEADLINE_S = 15.0
FINISH_DEADLINE_S = 60.0
START_TIMEOUT_S = 90.0
READY_LINE = re.compile(r"corral ready: roles \S+, listening at (http://\S+),")


# -- corral processes --------------------------------------------------------------------------


@dataclass
class Serve:
    """One ``corral serve`` in its own process group (so the MCP servers it spawns can be
    swept after it was killed), with its logs in files."""

    name: str
    args: list[str]
    root: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    token: str = ""
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.root / self.name

    def start(self) -> Serve:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._logs = [(self.state_dir / f"{n}.log").open("wb") for n in ("stdout", "stderr")]
        argv = [CORRAL, "serve", "--port", "0", "--state-dir", str(self.state_dir), *self.args]
        self.process = subprocess.Popen(
            argv, env=self.env, stdout=self._logs[0], stderr=self._logs[1], start_new_session=True
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def stderr(self) -> str:
        return (self.state_dir / "stderr.log").read_text()[-4000:]

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(f"{self.name} exited ({code}): {self.stderr}")
            # Only a process with the API server writes server.json; every one logs its address.
            ready = READY_LINE.search((self.state_dir / "stderr.log").read_text())
            if ready is not None:
                try:
                    if httpx.get(f"{ready[1]}/readyz", timeout=5).status_code == 200:
                        self.url = ready[1]
                        self.token = (self.state_dir / "admin.token").read_text().strip()
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not become ready: {self.stderr}")

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {self.token}"}, timeout=60
        )

    def kill(self) -> None:
        """SIGKILL the corral process alone, as a crash would."""
        assert self.process is not None
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def close(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=30)
            # What it spawned and left behind (a killed worker's MCP server).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        for log in self._logs:
            log.close()


# -- the journal, read straight from PostgreSQL ------------------------------------------------


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    async def fetch() -> list[tuple[Any, ...]]:
        connection = await asyncpg.connect(url, timeout=10)
        try:
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()

    return run_in_own_loop(fetch)


def completed_tool_keys(sessions_url: str) -> set[str]:
    """The idempotency keys of the tool steps journaled as completed."""
    rows = query(
        sessions_url,
        "SELECT session_id, kind, payload FROM agent_events "
        "WHERE kind IN ('activity_scheduled', 'activity_completed') ORDER BY session_id, seq",
    )
    keys: dict[tuple[str, int], str] = {}
    done: set[str] = set()
    for session, kind, payload in rows:
        event = json.loads(payload)
        if kind == "activity_scheduled" and event["activity"] == "tool":
            keys[(session, event["step"])] = event["key"]
        elif kind == "activity_completed" and (session, event["step"]) in keys:
            done.add(keys[(session, event["step"])])
    return done


def calls(counter_dir: Path) -> list[tuple[str, str, int]]:
    """(``start``/``done``, key, worker pid) of every tool call so far."""
    path = counter_dir / "calls"
    lines = path.read_text().split("\n") if path.exists() else []
    return [(p[0], p[1], int(p[2])) for p in (line.split() for line in lines) if len(p) == 3]


# -- the test ----------------------------------------------------------------------------------


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    """Two fresh databases for this test (the store, the sessions); dropped afterwards."""
    store, store_url = run_in_own_loop(create_database)
    sessions, sessions_url = run_in_own_loop(create_database)
    try:
        yield store_url, sessions_url
    finally:
        for database in (store, sessions):
            run_in_own_loop(functools.partial(drop_database, database))


def wait_until(what: str, check: Any, seconds: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {seconds:g}s"
        time.sleep(interval)


def test_a_killed_agents_worker_s_sessions_finish_on_the_other_within_15_s(
    databases: tuple[str, str], tmp_path: Path
) -> None:
    store_url, sessions_url = databases
    counter_dir = tmp_path / "counter"
    counter_dir.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORRAL_")}
    env["CORRAL_SECRET_KEY"] = Fernet.generate_key().decode()  # one deployment, one sealing key
    control = Serve(
        "control",
        ["--role", "apiserver,controllers,gateway", "--store", store_url],
        tmp_path,
        env,
    )
    started: list[Serve] = [control]
    try:
        with scripted_upstream(TOOL_CALLS) as upstream:
            control.start().wait_ready()
            worker_env = {
                **env,
                "CORRAL_SESSIONS_URL": sessions_url,
                "CORRAL_GATEWAY_URL": control.url,
            }
            a, b = (
                Serve(name, ["--role", "agents", "--store", store_url], tmp_path, worker_env)
                for name in ("worker-a", "worker-b")
            )
            started += [a.start(), b.start()]
            with control.client() as api:
                applied = api.post(
                    "/apis/corral.dev/v1alpha1/apply",
                    json={
                        "items": [
                            endpoint(
                                "counting-chat",
                                {"script": 100},
                                runtime={"type": "openai", "baseURL": upstream},
                            ),
                            manifest(
                                "Tool",
                                "slow-counter",
                                {
                                    "mcp": {
                                        "stdio": {
                                            "command": sys.executable,
                                            "args": [str(SLOW_COUNTER)],
                                            "env": {
                                                "COUNTER_DIR": str(counter_dir),
                                                "COUNTER_DELAY": str(TOOL_DELAY_S),
                                            },
                                        }
                                    },
                                    "risk": "read",
                                    "timeoutSeconds": 30,
                                },
                            ),
                            manifest("Policy", "counter", {"cedar": POLICIES}),
                            manifest(
                                "Agent",
                                "counter",
                                {
                                    "model": "counting-chat",
                                    "instructions": "Count.",
                                    "tools": [{"tool": "slow-counter", "allow": ["count"]}],
                                    "limits": {"maxSteps": 10, "maxDurationSeconds": 240},
                                },
                            ),
                        ]
                    },
                )
                assert applied.status_code == 200, applied.text
                wait_until(
                    "the Endpoint is ready",
                    lambda: is_ready(
                        api.get(
                            "/apis/corral.dev/v1alpha1/namespaces/default/endpoints/counting-chat"
                        ).json()
                    ),
                    START_TIMEOUT_S,
                )
            a.wait_ready()
            b.wait_ready()
            for worker in (a, b):  # each worker's directory sees the Tool's listed functions
                with worker.client() as http:
                    wait_until(
                        f"{worker.name} offers the agent's tool",
                        lambda http=http: (
                            [
                                entry["name"]
                                for entry in http.get(
                                    "/v1/discovery", params={"capability": "count"}
                                ).json()["agents"]
                            ]
                            == ["counter"]
                        ),
                        START_TIMEOUT_S,
                    )

            with a.client() as http:
                sessions = []
                for index in range(SESSIONS):
                    created = http.post(
                        "/v1/agents/default/counter/sessions", json={"message": f"count {index}"}
                    )
                    assert created.status_code == 201, created.text
                    sessions.append(created.json()["id"])
            # Kill A once every session's first tool call is done (journaled or about to be)
            # and the second ones are under way.
            wait_until(
                "the first tool calls finished",
                lambda: sum(1 for kind, _, _ in calls(counter_dir) if kind == "done") >= SESSIONS,
                START_TIMEOUT_S,
                0.02,
            )
            time.sleep(TOOL_DELAY_S / 3)
            a.kill()
            killed = time.monotonic()
            done_at_kill = completed_tool_keys(sessions_url)
            unfinished = query(
                sessions_url, "SELECT count(*) FROM agent_sessions WHERE state = 'active'"
            )[0][0]
            assert unfinished > 0, "every session had finished before the kill: nothing tested"
            assert done_at_kill, "no tool step had completed before the kill: nothing tested"

            def taken_over() -> bool:
                owners = query(
                    sessions_url, "SELECT owner FROM agent_sessions WHERE state = 'active'"
                )
                return not any(owner and f"-{a.pid}-" in owner for (owner,) in owners)

            wait_until("B took over A's sessions", taken_over, TAKEOVER_DEADLINE_S, 0.1)
            took_over_after = time.monotonic() - killed

            def finished() -> bool:
                states = query(sessions_url, "SELECT state FROM agent_sessions")
                return len(states) == SESSIONS and all(s == "waiting_input" for (s,) in states)

            wait_until("every session finished its turn", finished, FINISH_DEADLINE_S)
            finished_after = time.monotonic() - killed

            # Every session's turn ended with the final answer, as worker B's API shows it.
            with b.client() as http:
                for session in sessions:
                    view = http.get(f"/v1/agents/default/counter/sessions/{session}")
                    assert view.status_code == 200, view.text
                    finals = [e["text"] for e in view.json()["events"] if e["kind"] == "final"]
                    assert finals == [f"counted {TOOL_CALLS}"], view.json()["events"]
    finally:
        for process in reversed(started):
            process.close()

    assert took_over_after < TAKEOVER_DEADLINE_S
    print(f"taken over {took_over_after:.1f}s, finished {finished_after:.1f}s after the kill")

    log = calls(counter_dir)
    by_b = {key for kind, key, pid in log if kind == "start" and pid == b.pid}
    by_a = {key for kind, key, pid in log if kind == "start" and pid == a.pid}
    assert by_b, "worker B ran no tool call: nothing was resumed"
    assert by_a, "worker A ran no tool call before it was killed"
    assert not (by_b & done_at_kill), "a tool step completed before the kill ran again on B"
    expected = completed_tool_keys(sessions_url)
    assert len(expected) == SESSIONS * TOOL_CALLS
    seen = (counter_dir / "seen").read_text().split()
    assert sorted(seen) == sorted(expected), "each key's side effect happened exactly once"
    starts: dict[str, int] = {}
    for kind, key, _ in log:
        if kind == "start":
            starts[key] = starts.get(key, 0) + 1
    assert max(starts.values()) <= 2  # only the call in flight at the kill ran twice
    assert set(starts) == expected
