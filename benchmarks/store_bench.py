"""Store benchmark: write throughput and watch latency on SQLite and PostgreSQL.

    python benchmarks/store_bench.py [--quick] [--postgres-dsn DSN]

Prints one table of medians over a few repeats:

- sequential creates/s through the store API (one awaited create after another), next to a bare
  baseline doing the least the same durability needs (sqlite3: INSERT + COMMIT per row in WAL
  with synchronous=NORMAL; asyncpg: one autocommit INSERT per row), and the ratio between them;
- how late a 1 ms timer fires on the event loop while SQLite writes run on it;
- concurrent creates/s (many writers at once);
- watch latency to a watcher, p50 and p99, measured from the writer's acknowledgement and from
  the moment the write was issued (an upper bound on commit → watcher): SQLite with the writer
  in the same process, PostgreSQL with the writer in another process (LISTEN/NOTIFY).

Goals: ≥ 3,000 sequential creates/s on SQLite; watch p99 ≤ 10 ms on SQLite, ≤ 50 ms on Postgres.
PostgreSQL rows need the server at CORRAL_TEST_POSTGRES_DSN (a scratch database is created and
dropped); when it is unreachable those rows say so instead of a number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
from rich.console import Console
from rich.table import Table

from corral.store import Store, WatchEvent, open_store

DEFAULT_DSN = os.environ.get(
    "CORRAL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@dataclass(frozen=True)
class Sizes:
    repeats: int
    creates: int
    concurrent_writers: int
    concurrent_creates: int
    watch_events: int
    watch_interval: float


FULL = Sizes(3, 3000, 32, 4000, 400, 0.004)
QUICK = Sizes(3, 800, 16, 1200, 120, 0.004)


def manifest(name: str, **extra: Any) -> dict[str, Any]:
    """A realistic small object (≈ 500 bytes serialised)."""
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Endpoint",
        "metadata": {"name": name, "namespace": "default", "labels": {"team": "search"}},
        "spec": {
            "models": [{"model": "llama-3.1-8b-instruct", "version": "2024-07", "weight": 100}],
            "runtime": "llamacpp",
            "replicas": 2,
            "routing": "least-load",
            "slo": {"ttftMs": 500, "p99LatencyMs": 4000},
            "note": "x" * 200,
            **extra,
        },
    }


# -- throughput --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    per_second: float
    loop_stall_p99_ms: float
    """How late a 1 ms timer fired while the writes ran: how responsive the loop stayed."""


async def store_sequential(open_: Callable[[], Awaitable[Store]], count: int) -> Throughput:
    store = await open_()
    stalls: list[float] = []
    writing = True

    async def tick() -> None:
        while writing:
            due = time.perf_counter() + 0.001
            await asyncio.sleep(0.001)
            stalls.append(max(0.0, time.perf_counter() - due) * 1000)

    ticker = asyncio.create_task(tick())
    try:
        started = time.perf_counter()
        for index in range(count):
            await store.create(manifest(f"o-{index}"))
        elapsed = time.perf_counter() - started
    finally:
        writing = False
        await ticker
        await store.close()
    return Throughput(count / elapsed, percentile(stalls or [0.0], 0.99))


async def store_concurrent(
    open_: Callable[[], Awaitable[Store]], writers: int, count: int
) -> float:
    store = await open_()
    per_writer = count // writers

    async def write(writer: int) -> None:
        for index in range(per_writer):
            await store.create(manifest(f"w{writer}-{index}"))

    try:
        started = time.perf_counter()
        await asyncio.gather(*(write(writer) for writer in range(writers)))
        return per_writer * writers / (time.perf_counter() - started)
    finally:
        await store.close()


def bare_sqlite_sequential(path: str, count: int) -> float:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(
            "CREATE TABLE objects (kind TEXT, namespace TEXT, name TEXT, data BLOB, "
            "PRIMARY KEY (kind, namespace, name))"
        )
        started = time.perf_counter()
        for index in range(count):
            name = f"o-{index}"
            connection.execute("BEGIN")
            connection.execute(
                "INSERT INTO objects VALUES (?, ?, ?, ?)",
                ("Endpoint", "default", name, orjson.dumps(manifest(name))),
            )
            connection.execute("COMMIT")
        return count / (time.perf_counter() - started)
    finally:
        connection.close()


async def bare_postgres_sequential(url: str, count: int) -> float:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "CREATE TABLE bare_objects (kind text, namespace text, name text, data text, "
            "PRIMARY KEY (kind, namespace, name))"
        )
        started = time.perf_counter()
        for index in range(count):
            name = f"o-{index}"
            await connection.execute(
                "INSERT INTO bare_objects VALUES ($1, $2, $3, $4)",
                "Endpoint",
                "default",
                name,
                orjson.dumps(manifest(name)).decode(),
            )
        return count / (time.perf_counter() - started)
    finally:
        await connection.close()


def following(store: Store, start: int) -> AsyncGenerator[WatchEvent, None]:
    """The store's watch; the backends return async generators, which can be closed."""
    return cast(AsyncGenerator[WatchEvent, None], store.watch(resource_version=start))


# -- watch latency -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Latencies:
    from_ack: list[float]
    """ms from the writer seeing its create acknowledged to the watcher getting the event."""
    from_start: list[float]
    """ms from the writer issuing the create: an upper bound on commit → watcher."""


def latencies(
    issued: dict[int, float], acknowledged: dict[int, float], received: dict[int, float]
) -> Latencies:
    return Latencies(
        [(received[rv] - acknowledged[rv]) * 1000 for rv in acknowledged],
        [(received[rv] - issued[rv]) * 1000 for rv in issued],
    )


async def sqlite_watch_latency(url: str, events: int, interval: float) -> Latencies:
    """Writer and watcher in this process."""
    store = await open_store(url)
    issued: dict[int, float] = {}
    acknowledged: dict[int, float] = {}
    received: dict[int, float] = {}
    try:
        start = await store.current_resource_version()

        async def watch() -> None:
            async with contextlib.aclosing(following(store, start)) as stream:
                async for event in stream:
                    received[event.resource_version] = time.perf_counter()
                    if len(received) == events:
                        return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.05)
        for index in range(events):
            started = time.perf_counter()
            created = await store.create(manifest(f"lat-{index}"))
            rv = int(created["metadata"]["resourceVersion"])
            issued[rv], acknowledged[rv] = started, time.perf_counter()
            await asyncio.sleep(interval)
        await asyncio.wait_for(watcher, 30)
    finally:
        await store.close()
    return latencies(issued, acknowledged, received)


async def postgres_watch_latency(url: str, events: int, interval: float) -> Latencies:
    """Writer in another process, watcher here; both read the wall clock (one machine).

    NOTIFY is delivered at commit, often before the writer has read its own acknowledgement, so
    "from ack" samples can be slightly negative; "from start" bounds commit → watcher above.
    """
    store = await open_store(url)
    received: dict[int, float] = {}
    try:
        start = await store.current_resource_version()

        async def watch() -> None:
            async with contextlib.aclosing(following(store, start)) as stream:
                async for event in stream:
                    received[event.resource_version] = time.time()
                    if len(received) == events:
                        return

        watcher = asyncio.create_task(watch())
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--writer",
            url,
            str(events),
            str(interval),
            stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 120)
        if process.returncode != 0:
            raise RuntimeError(f"writer process failed with {process.returncode}")
        await asyncio.wait_for(watcher, 30)
    finally:
        await store.close()
    issued: dict[int, float] = {}
    acknowledged: dict[int, float] = {}
    for line in output.decode().splitlines():
        rv, started, done = line.split()
        issued[int(rv)], acknowledged[int(rv)] = float(started), float(done)
    return latencies(issued, acknowledged, received)


async def writer_process(url: str, events: int, interval: float) -> None:
    store = await open_store(url)
    try:
        await asyncio.sleep(0.3)  # let the watcher settle on its LISTEN connection
        for index in range(events):
            started = time.time()
            created = await store.create(manifest(f"lat-{index}"))
            rv = created["metadata"]["resourceVersion"]
            print(rv, repr(started), repr(time.time()), flush=True)
            await asyncio.sleep(interval)
    finally:
        await store.close()


# -- harness -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def scratch_database(dsn: str) -> AsyncIterator[str]:
    name = f"corral_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(dsn, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def median_over(repeats: int, run: Callable[[], Awaitable[float]]) -> float:
    return statistics.median([await run() for _ in range(repeats)])


async def latency_over(repeats: int, run: Callable[[], Awaitable[Latencies]]) -> dict[str, float]:
    """Median over runs of each run's p50 and p99, from ack and from the write's start."""
    runs = [await run() for _ in range(repeats)]
    summary: dict[str, float] = {}
    for label in ("ack", "start"):
        for name, fraction in (("p50", 0.50), ("p99", 0.99)):
            summary[f"{label} {name}"] = statistics.median(
                percentile(run.from_ack if label == "ack" else run.from_start, fraction)
                for run in runs
            )
    return summary


async def throughput_over(repeats: int, run: Callable[[], Awaitable[Throughput]]) -> Throughput:
    runs = [await run() for _ in range(repeats)]
    return Throughput(
        statistics.median(r.per_second for r in runs),
        statistics.median(r.loop_stall_p99_ms for r in runs),
    )


def latency_rows(backend: str, where: str, summary: dict[str, float], goal: str) -> list[Row]:
    return [
        (backend, f"watch latency p50, ack → event ({where})", f"{summary['ack p50']:.2f} ms", ""),
        (backend, f"watch latency p99, ack → event ({where})", f"{summary['ack p99']:.2f} ms", ""),
        (
            backend,
            f"watch latency p99, write start → event ({where})",
            f"{summary['start p99']:.2f} ms",
            goal,
        ),
    ]


Row = tuple[str, str, str, str]


async def sqlite_rows(sizes: Sizes, workdir: Path) -> list[Row]:
    counter = iter(range(1_000_000))

    def fresh_url() -> str:
        return f"sqlite:///{workdir}/s{next(counter)}.db"

    async def open_fresh() -> Store:
        return await open_store(fresh_url())

    sequential = await throughput_over(
        sizes.repeats, lambda: store_sequential(open_fresh, sizes.creates)
    )
    bare = await median_over(
        sizes.repeats,
        lambda: asyncio.to_thread(
            bare_sqlite_sequential, f"{workdir}/bare{next(counter)}.db", sizes.creates
        ),
    )
    concurrent = await median_over(
        sizes.repeats,
        lambda: store_concurrent(open_fresh, sizes.concurrent_writers, sizes.concurrent_creates),
    )
    summary = await latency_over(
        sizes.repeats,
        lambda: sqlite_watch_latency(fresh_url(), sizes.watch_events, sizes.watch_interval),
    )
    rate = sequential.per_second
    return [
        ("SQLite", "sequential creates/s", f"{rate:,.0f}", "goal ≥ 3,000"),
        (
            "SQLite",
            "bare sqlite3 INSERT+COMMIT/s",
            f"{bare:,.0f}",
            f"store = {rate / bare:.2f}× bare",
        ),
        (
            "SQLite",
            "event-loop stall p99 during those creates",
            f"{sequential.loop_stall_p99_ms:.2f} ms",
            "lateness of a 1 ms timer",
        ),
        (
            "SQLite",
            f"concurrent creates/s ({sizes.concurrent_writers} writers)",
            f"{concurrent:,.0f}",
            "",
        ),
        *latency_rows("SQLite", "same process", summary, "goal ≤ 10 ms"),
    ]


async def postgres_rows(sizes: Sizes, dsn: str) -> list[Row]:
    async def sequential() -> Throughput:
        async with scratch_database(dsn) as url:
            return await store_sequential(lambda: open_store(url), sizes.creates)

    async def bare() -> float:
        async with scratch_database(dsn) as url:
            return await bare_postgres_sequential(url, sizes.creates)

    async def concurrent() -> float:
        async with scratch_database(dsn) as url:
            return await store_concurrent(
                lambda: open_store(url, max_pool_size=sizes.concurrent_writers),
                sizes.concurrent_writers,
                sizes.concurrent_creates,
            )

    async def latency() -> Latencies:
        async with scratch_database(dsn) as url:
            return await postgres_watch_latency(url, sizes.watch_events, sizes.watch_interval)

    store = await throughput_over(sizes.repeats, sequential)
    bare_rate = await median_over(sizes.repeats, bare)
    concurrent_rate = await median_over(sizes.repeats, concurrent)
    summary = await latency_over(sizes.repeats, latency)
    rate = store.per_second
    return [
        ("Postgres", "sequential creates/s", f"{rate:,.0f}", "for comparison"),
        (
            "Postgres",
            "bare asyncpg INSERT (autocommit)/s",
            f"{bare_rate:,.0f}",
            f"store = {rate / bare_rate:.2f}× bare",
        ),
        (
            "Postgres",
            f"concurrent creates/s ({sizes.concurrent_writers} writers)",
            f"{concurrent_rate:,.0f}",
            "writes serialise on one lock",
        ),
        *latency_rows("Postgres", "writer in another process", summary, "goal ≤ 50 ms"),
    ]


async def main(sizes: Sizes, dsn: str) -> None:
    console = Console(width=120)
    started = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as workdir:
        rows += await sqlite_rows(sizes, Path(workdir))
    try:
        rows += await postgres_rows(sizes, dsn)
    except (OSError, asyncpg.PostgresError, ConnectionError) as error:
        rows.append(("Postgres", "all rows", "n/a", f"unreachable at {dsn}: {error}"))
    table = Table(title=f"corral store (median of {sizes.repeats} runs)")
    for header in ("backend", "measure", "value", "note"):
        table.add_column(header, justify="right" if header == "value" else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"took {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        asyncio.run(writer_process(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations (≈ 30 s)")
    parser.add_argument("--postgres-dsn", default=DEFAULT_DSN)
    arguments = parser.parse_args()
    asyncio.run(main(QUICK if arguments.quick else FULL, arguments.postgres_dsn))
