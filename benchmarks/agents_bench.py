"""Agent runtime benchmark: durable sessions on SQLite and Postgres, next to DBOS Transact.

    python benchmarks/agents_bench.py [--quick] [--postgres-dsn DSN] [--dormant N] [--no-peer]

The workload (issue 5): sessions of 5 no-op activities — a scripted model asks for a no-op
tool twice and then answers (model, tool, model, tool, model), through the real runtime and
the real journal store; "steps" are journaled activities. Rows:

- steps/s with 1,000 sessions in flight at once (a new session starts as one ends), on SQLite
  and on Postgres (a scratch database, dropped after);
- per-step overhead of a lone session (median gap between two activities, no-op both, journal
  write of each result awaited);
- activation of a passivated session: ``send_message`` to a session waiting for input (claim,
  load the journal, journal the message), p50/p99;
- store bytes per dormant session, listing an agent's sessions a page (100) at a time;
  ``--dormant`` rows are written through the journal store with the exact bytes of a real
  session (created by the runtime: created, message, model step, answer), not by running each;
- RSS with 10,000 sessions active at once, each waiting on a slow tool;
- DBOS Transact (``dbos`` in its own venv, ~/.cache/corral/bench/dbos-venv, created on first
  use) running the same workload — workflows of 5 no-op steps, as many started at once — on
  SQLite and Postgres, a 15-second round after each of corral's throughput rounds so both meet
  the same background load on a shared machine; the ratio is the median of per-round ratios.

The process runs as ``corral serve`` does: on uvloop, with its collector settings (start-up
objects frozen, young-generation threshold 50,000).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import uvloop

from corral.agents.config import AgentConfig, Approvals, Limits, StaticAgents, ToolBinding
from corral.agents.runtime import AgentRuntime, new_session_id
from corral.store.session_journal import open_session_journal

DEFAULT_DSN = os.environ.get(
    "CORRAL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DBOS_VERSION = "3.4.0"
DBOS_VENV = Path(
    os.environ.get("BENCH_DBOS_VENV") or Path.home() / ".cache" / "corral" / "bench" / "dbos-venv"
)
ACTIVITIES = 5
NOOP = ToolBinding("noop", "bench", "noop", "does nothing", {"type": "object"}, "read", 60)
SLOW = ToolBinding("slow", "bench", "slow", "waits", {"type": "object"}, "read", 600)
CALL_NOOP = {
    "choices": [{"message": {"content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "noop", "arguments": "{}"}}]}}],
}  # fmt: skip
CALL_SLOW = {
    "choices": [{"message": {"content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "slow", "arguments": "{}"}}]}}],
}  # fmt: skip
ANSWER = {"choices": [{"message": {"content": "done"}}], "usage": {"total_tokens": 12}}


def config(name: str = "bench", **limits: Any) -> AgentConfig:
    return AgentConfig(
        "default", name, "chat", "", {"noop": NOOP, "slow": SLOW}, Limits(**limits),
        Approvals(require=frozenset()), "conversation",
    )  # fmt: skip


async def five_activities(request: dict[str, Any], token: str) -> Any:  # noqa: ARG001
    tools = sum(1 for m in request["messages"] if m["role"] == "tool")
    return CALL_NOOP if tools < (ACTIVITIES - 1) // 2 else ANSWER


class Tools:
    def __init__(self, expect: int = 0) -> None:
        self.release = asyncio.Event()
        self.all_waiting = asyncio.Event()
        self.expect = expect
        self.waiting = 0

    async def call(self, tool: str, name: str, arguments: Any, key: str, token: str) -> Any:  # noqa: ARG002
        if name == "slow":
            self.waiting += 1
            if self.waiting >= self.expect:
                self.all_waiting.set()
            await self.release.wait()
        return "ok"


def server_gc() -> None:
    """The collector as ``corral serve`` leaves it (src/corral/server/serve.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


JOURNALS: dict[int, Any] = {}


async def runtime_on(url: str, model: Any, tools: Any, **agent_limits: Any) -> AgentRuntime:
    journal = await open_session_journal(url)
    runtime = AgentRuntime(journal, StaticAgents(config(**agent_limits)), model, tools,
                           poll_seconds=5.0)  # fmt: skip
    JOURNALS[id(runtime)] = journal
    await runtime.start()
    return runtime


async def close(runtime: AgentRuntime) -> None:
    await runtime.stop()
    await JOURNALS.pop(id(runtime)).close()


# -- sections ----------------------------------------------------------------------------------


async def throughput_rounds(
    urls: list[str],
    sessions: int,
    concurrency: int,
    peer: Callable[[int], Awaitable[dict[str, float]]] | None = None,
) -> dict[str, Any]:
    """The median of a few rounds (each on a fresh journal; the machine is shared) after one
    uncounted warm-up round. With ``peer`` (DBOS), each corral round is followed by a peer
    round (``peer(i)``), so both meet the same background load; the ratio reported is the
    median of the per-round ratios."""
    await throughput(urls[0], concurrency, concurrency)
    rates: list[float] = []
    peer_rates: list[float] = []
    for index, url in enumerate(urls[1:]):
        rates.append((await throughput(url, sessions, concurrency))["steps_per_s"])
        if peer is not None:
            peer_rates.append((await peer(index))["steps_per_s"])
    result: dict[str, Any] = {
        "steps_per_s": statistics.median(rates),
        "rounds": rates,
        "sessions": sessions,
    }
    if peer_rates:
        result["peer_rounds"] = peer_rates
        result["peer_steps_per_s"] = statistics.median(peer_rates)
        result["ratio"] = statistics.median(c / d for c, d in zip(rates, peer_rates, strict=True))
    return result


async def throughput(url: str, sessions: int, concurrency: int) -> dict[str, float]:
    runtime = await runtime_on(url, five_activities, Tools())
    queue = iter(range(sessions))

    async def driver() -> None:
        for _ in queue:
            session_id = await runtime.create_session("default", "bench", message="go")
            await runtime.wait(session_id, seconds=300)

    start = time.perf_counter()
    await asyncio.gather(*(driver() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await close(runtime)
    return {"steps_per_s": sessions * ACTIVITIES / elapsed, "seconds": elapsed,
            "sessions": sessions}  # fmt: skip


async def lone_session(url: str, steps: int) -> dict[str, float]:
    marks: list[float] = []

    async def model(request: dict[str, Any], token: str) -> Any:  # noqa: ARG001
        marks.append(time.perf_counter())
        tools = sum(1 for m in request["messages"] if m["role"] == "tool")
        return CALL_NOOP if tools < steps // 2 else ANSWER

    class Marking(Tools):
        async def call(self, *_: Any) -> Any:
            marks.append(time.perf_counter())
            return "ok"

    runtime = await runtime_on(url, model, Marking(), max_steps=steps + 10)
    session_id = await runtime.create_session("default", "bench", message="go")
    await runtime.wait(session_id, seconds=120)
    await close(runtime)
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(marks)]
    return {"p50_ms": statistics.median(gaps), "p99_ms": percentile(gaps, 0.99),
            "steps": len(marks)}  # fmt: skip


async def activation(url: str, sessions: int) -> dict[str, float]:
    async def answer(request: dict[str, Any], token: str) -> Any:  # noqa: ARG001
        return ANSWER

    runtime = await runtime_on(url, answer, Tools())
    ids = [await runtime.create_session("default", "bench", message="hi") for _ in range(sessions)]
    for session_id in ids:
        await runtime.wait(session_id)
    assert runtime.live_sessions == 0
    times: list[float] = []
    for session_id in ids:
        start = time.perf_counter()
        await runtime.send_message(session_id, "again")
        times.append((time.perf_counter() - start) * 1000)
        await runtime.wait(session_id)
    await close(runtime)
    return {"p50_ms": statistics.median(times), "p99_ms": percentile(times, 0.99),
            "sessions": sessions}  # fmt: skip


async def dormant(path: Path, sessions: int) -> dict[str, float]:
    url = f"sqlite:///{path}"

    async def answer(request: dict[str, Any], token: str) -> Any:  # noqa: ARG001
        return ANSWER

    runtime = await runtime_on(url, answer, Tools())
    sample = await runtime.create_session("default", "bench", message="What is the weather?")
    await runtime.wait(sample)
    journal = JOURNALS.pop(id(runtime))
    template = await journal.read_events(sample)
    row = await journal.get(sample)
    assert row is not None
    await runtime.stop()
    base_bytes = _file_bytes(path)
    start = time.perf_counter()
    batch = 2_000
    for first in range(0, sessions, batch):
        now = time.time()
        creates = []
        for _ in range(min(batch, sessions - first)):
            session_id = new_session_id(now)
            events = [(session_id, e.seq, e.kind, e.payload, now) for e in template]
            creates.append(journal.create(
                session_id, "default", "bench", events, state="waiting_input", owner=None,
                lease_seconds=0, summary=row.summary, wake_at=row.wake_at, now=now,
            ))  # fmt: skip
        await asyncio.gather(*creates)
    write_s = time.perf_counter() - start
    per_session = (_file_bytes(path) - base_bytes) / sessions
    pages: list[float] = []
    cursor = None
    for _ in range(50):
        start = time.perf_counter()
        page, cursor = await journal.list_sessions("default", "bench", limit=100, after=cursor)
        pages.append((time.perf_counter() - start) * 1000)
        assert len(page) == 100
    await journal.close()
    return {"bytes_per_session": per_session, "sessions": sessions, "write_s": write_s,
            "events_per_session": len(template), "page_p50_ms": statistics.median(pages),
            "page_max_ms": max(pages), "live_sessions": runtime.live_sessions}  # fmt: skip


def _file_bytes(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_count, page_size = (
            db.execute("PRAGMA page_count").fetchone()[0],
            db.execute("PRAGMA page_size").fetchone()[0],
        )
        freelist = db.execute("PRAGMA freelist_count").fetchone()[0]
        return int((page_count - freelist) * page_size)
    finally:
        db.close()


async def active_rss(url: str, sessions: int) -> dict[str, float]:
    tools = Tools(expect=sessions)

    async def slow_then_answer(request: dict[str, Any], token: str) -> Any:  # noqa: ARG001
        done = any(m["role"] == "tool" for m in request["messages"])
        return ANSWER if done else CALL_SLOW

    runtime = await runtime_on(url, slow_then_answer, tools)
    before = rss_mb()
    ids = await asyncio.gather(
        *(runtime.create_session("default", "bench", message="go") for _ in range(sessions))
    )
    await asyncio.wait_for(tools.all_waiting.wait(), 300)
    gc.collect()
    during = rss_mb()
    live = runtime.live_sessions
    tools.release.set()
    for session_id in ids:
        await runtime.wait(session_id, seconds=300)
    await close(runtime)
    return {"rss_mb": during, "rss_before_mb": before, "waiting": tools.waiting,
            "live": live}  # fmt: skip


# -- DBOS ------------------------------------------------------------------------------------------

DBOS_WORKLOAD = r"""
import asyncio, json, os, sys, time
from dbos import DBOS, DBOSConfig

url, sessions, window = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
DBOS(config={"name": "agentsbench", "system_database_url": url, "log_level": "WARNING"})
steps = 0

@DBOS.step()
async def noop(i: int) -> int:
    global steps
    steps += 1
    return i

@DBOS.workflow()
async def session(n: int) -> int:
    for i in range(5):
        await noop(i)
    return n

async def main() -> None:
    DBOS.launch()
    start = time.perf_counter()
    starts = (DBOS.start_workflow_async(session, i) for i in range(sessions))
    handles = await asyncio.gather(*starts)
    results = asyncio.gather(*(h.get_result() for h in handles))
    try:
        await asyncio.wait_for(asyncio.shield(results), window)
    except TimeoutError:
        pass
    print(json.dumps({"steps": steps, "seconds": time.perf_counter() - start}), flush=True)
    os._exit(0)

asyncio.run(main())
"""


def dbos_python() -> Path:
    python = DBOS_VENV / "bin" / "python"
    probe = [str(python), "-c", "import dbos"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {DBOS_VENV} with dbos=={DBOS_VERSION} (one-time, a minute)", flush=True)
    DBOS_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(DBOS_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"dbos=={DBOS_VERSION}"],
                   check=True)  # fmt: skip
    return python


def dbos_run(url: str, sessions: int, window: float) -> dict[str, float]:
    """Start ``sessions`` workflows at once; steps done within ``window`` seconds, per second
    (a time box: DBOS does ~160-200 steps/s here, so 1,000 sessions would take ~30 s)."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(DBOS_WORKLOAD)
    try:
        out = subprocess.run(
            [str(dbos_python()), script.name, url, str(sessions), str(window)],
            capture_output=True, text=True, timeout=window + 120,
        )  # fmt: skip
    finally:
        os.unlink(script.name)
    if out.returncode != 0:
        raise RuntimeError(f"DBOS run failed: {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"steps_per_s": result["steps"] / result["seconds"], **result}


# -- Postgres scratch databases -------------------------------------------------------------------


async def scratch_database(dsn: str) -> tuple[str, str]:
    name = f"corral_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name, urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def drop_database(dsn: str, name: str) -> None:
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def on_postgres(
    dsn: str, work: Callable[[str], Awaitable[dict[str, float]]]
) -> dict[str, float]:
    name, url = await scratch_database(dsn)
    try:
        return await work(url)
    finally:
        await drop_database(dsn, name)


# -- main -----------------------------------------------------------------------------------------


async def _fresh_postgres(dsn: str, created: list[str]) -> str:
    name, url = await scratch_database(dsn)
    created.append(name)
    return url


async def main(args: argparse.Namespace) -> dict[str, Any]:
    server_gc()
    quick = args.quick
    results: dict[str, Any] = {}
    created: list[str] = []
    try:
        await _sections(args, quick, results, created)
    finally:
        for name in created:
            await drop_database(args.postgres_dsn, name)
    return results


async def _sections(
    args: argparse.Namespace, quick: bool, results: dict[str, Any], created: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        # RSS first, so the other sections' peaks do not count.
        results["rss"] = await active_rss(f"sqlite:///{d}/rss.db", 2_000 if quick else 10_000)
        n = 2_000 if quick else 5_000
        window = 5.0 if quick else 15.0

        def dbos_sqlite(index: int) -> Awaitable[dict[str, float]]:
            url = f"sqlite:///{d}/dbos{index}.sqlite"
            return asyncio.to_thread(dbos_run, url, 1_000, window)

        def dbos_postgres(_index: int) -> Awaitable[dict[str, float]]:
            return on_postgres(
                args.postgres_dsn, lambda url: asyncio.to_thread(dbos_run, url, 1_000, window)
            )

        results["sqlite"] = await throughput_rounds(
            [f"sqlite:///{d}/tp{i}.db" for i in range(4)],
            n,
            1_000,
            None if args.no_peer else dbos_sqlite,
        )
        results["postgres"] = await throughput_rounds(
            [await _fresh_postgres(args.postgres_dsn, created) for _ in range(4)],
            n // 2,
            1_000,
            None if args.no_peer else dbos_postgres,
        )
        results["lone"] = await lone_session(f"sqlite:///{d}/lone.db", 400)
        results["lone_pg"] = await on_postgres(
            args.postgres_dsn, lambda url: lone_session(url, 200)
        )
        results["activation"] = await activation(f"sqlite:///{d}/act.db", 300 if quick else 2_000)
        results["dormant"] = await dormant(d / "dormant.db", 10_000 if quick else args.dormant)


def report(r: dict[str, Any]) -> None:
    sq, pg, lone, lone_pg = r["sqlite"], r["postgres"], r["lone"], r["lone_pg"]
    act, dor, rss = r["activation"], r["dormant"], r["rss"]
    rows = [
        (
            "steps/s, SQLite, 1,000 sessions in flight (median of 3)",
            f"{sq['steps_per_s']:,.0f}",
            "≥ 20,000  rounds " + ", ".join(f"{x:,.0f}" for x in sq["rounds"]),
        ),
        (
            "steps/s, Postgres, 1,000 sessions in flight (median of 3)",
            f"{pg['steps_per_s']:,.0f}",
            "≥ 5,000  rounds " + ", ".join(f"{x:,.0f}" for x in pg["rounds"]),
        ),
        (
            "lone session per-step overhead p50 (p99), SQLite",
            f"{lone['p50_ms']:.3f} ms ({lone['p99_ms']:.2f})",
            "≤ 0.5 ms",
        ),
        (
            "lone session per-step overhead p50 (p99), Postgres",
            f"{lone_pg['p50_ms']:.3f} ms ({lone_pg['p99_ms']:.2f})",
            "",
        ),
        (
            "activation of a passivated session p50 / p99",
            f"{act['p50_ms']:.2f} / {act['p99_ms']:.2f} ms",
            "≤ 2 / 10 ms",
        ),
        (
            f"store bytes per dormant session ({dor['sessions']:,} sessions, "
            f"{dor['events_per_session']} events each; live tasks {dor['live_sessions']})",
            f"{dor['bytes_per_session']:,.0f} B",
            "≤ 2 KB",
        ),
        (
            "list an agent's sessions, page of 100, p50 / max",
            f"{dor['page_p50_ms']:.2f} / {dor['page_max_ms']:.2f} ms",
            "≤ 100 ms",
        ),
        (
            f"RSS with {rss['waiting']:,} sessions waiting on slow tools",
            f"{rss['rss_mb']:,.0f} MB (idle {rss['rss_before_mb']:.0f})",
            "≤ 1.5 GB",
        ),
    ]
    if "ratio" in sq:
        rows += [
            (
                f"DBOS Transact {DBOS_VERSION} steps/s, SQLite (1,000 workflows at once, "
                "a round after each of corral's)",
                f"{sq['peer_steps_per_s']:,.0f}",
                f"corral {sq['ratio']:,.0f}x (median of per-round ratios; DBOS rounds "
                + ", ".join(f"{x:,.0f}" for x in sq["peer_rounds"])
                + ")",
            ),
            (
                f"DBOS Transact {DBOS_VERSION} steps/s, Postgres (1,000 workflows at once, "
                "a round after each of corral's)",
                f"{pg['peer_steps_per_s']:,.0f}",
                f"corral {pg['ratio']:,.1f}x (DBOS rounds "
                + ", ".join(f"{x:,.0f}" for x in pg["peer_rounds"])
                + ")",
            ),
        ]
    width = max(len(row[0]) for row in rows)
    print(f"{'measure'.ljust(width)}  {'value':>24}  goal / ratio")
    for name, value, goal in rows:
        print(f"{name.ljust(width)}  {value:>24}  {goal}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--postgres-dsn", default=DEFAULT_DSN)
    parser.add_argument("--dormant", type=int, default=100_000,
                        help="dormant sessions to write (1,000,000 takes minutes)")  # fmt: skip
    parser.add_argument("--no-peer", action="store_true", help="skip DBOS")
    parser.add_argument("--json", help="also write the numbers here")
    arguments = parser.parse_args()
    # corral serve runs on uvloop (src/corral/server/serve.py), and so does this.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        numbers = runner.run(main(arguments))
    report(numbers)
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(numbers, indent=2))
