"""Audit log benchmark: append throughput with group commit against one commit per record, and
verification speed (SQLite; synchronous=FULL, so every commit is an fsync).

    python benchmarks/audit_bench.py [--quick]

Prints one table:

- appends/s with many concurrent appenders and group commit (the log's default), with the same
  appenders but one record per transaction (``max_batch=1``), and one awaited append after
  another (each its own transaction): the gap is what batching saves on commits and fsyncs;
- the mean records per transaction under group commit;
- verify time for a log of N records with a signed checkpoint every 1,000, scaled to 100k
  records, and the time to build one inclusion proof over the whole log.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from corral.audit import AuditEvent, AuditLog, SigningKey, inclusion_proof, verify
from corral.audit.storage import ChainHead
from corral.store.audit_storage import SqliteAuditStorage


@dataclass(frozen=True)
class Sizes:
    concurrent_appends: int
    appenders: int
    sequential_appends: int
    verify_records: int


QUICK = Sizes(
    concurrent_appends=2_000, appenders=200, sequential_appends=200, verify_records=10_000
)
FULL = Sizes(
    concurrent_appends=20_000, appenders=500, sequential_appends=1_000, verify_records=100_000
)


def sample(number: int) -> AuditEvent:
    return AuditEvent(
        actor=f"spiffe://corral/ns/team-{number % 7}/agent/helper",
        action="invoke",
        resource="default/Endpoint/chat",
        decision="allow",
        policies=("allow-team",),
        cost=0.0004 * number,
        details={"model": "llama-3-8b", "tokens": {"in": number % 900, "out": number % 300}},
    )


async def open_log(directory: Path, name: str, **options: int) -> AuditLog:
    storage = await SqliteAuditStorage.open(str(directory / f"{name}.db"))
    return await AuditLog.open(storage, SigningKey.generate(), **options)


async def concurrent_rate(
    directory: Path, name: str, records: int, appenders: int, max_batch: int
) -> tuple[float, float]:
    """(appends/s, mean records per transaction) for ``appenders`` tasks sharing ``records``."""
    log = await open_log(directory, name, max_batch=max_batch, checkpoint_every=10**9)
    transactions = 0
    original = log.storage.append

    async def counting(build: object) -> object:
        nonlocal transactions
        transactions += 1
        return await original(build)  # type: ignore[arg-type]

    log.storage.append = counting  # type: ignore[method-assign]
    per_task = records // appenders

    async def appender(offset: int) -> None:
        for number in range(offset, offset + per_task):
            await log.append(sample(number))

    started = time.perf_counter()
    await asyncio.gather(*(appender(task * per_task) for task in range(appenders)))
    elapsed = time.perf_counter() - started
    await log.close()
    await log.storage.close()
    return per_task * appenders / elapsed, per_task * appenders / transactions


async def sequential_rate(directory: Path, records: int) -> float:
    log = await open_log(directory, "sequential", checkpoint_every=10**9)
    started = time.perf_counter()
    for number in range(records):
        await log.append(sample(number))
    elapsed = time.perf_counter() - started
    await log.close()
    await log.storage.close()
    return records / elapsed


async def verify_times(directory: Path, records: int) -> tuple[float, float]:
    """(verify seconds, inclusion proof seconds) for a log of ``records`` records."""
    storage = await SqliteAuditStorage.open(str(directory / "verify.db"))
    key = SigningKey.generate()
    log = await AuditLog.open(storage, key, checkpoint_every=10**9)
    # Filled 1,000 at a time so the setup stays quick; a checkpoint after each thousand.
    for start in range(0, records, 1_000):
        await asyncio.gather(*(log.append(sample(n)) for n in range(start, start + 1_000)))
        await log.checkpoint()
    await log.close()
    started = time.perf_counter()
    report = await verify(storage, key.public_keys())
    verify_seconds = time.perf_counter() - started
    if not report.ok or report.records != records:
        raise SystemExit(f"verify failed on an untouched log: {report.summary()}")
    head: ChainHead = await storage.head()
    started = time.perf_counter()
    await inclusion_proof(storage, head.size // 3, head.size)
    proof_seconds = time.perf_counter() - started
    await storage.close()
    return verify_seconds, proof_seconds


async def run(sizes: Sizes) -> Table:
    table = Table(title="audit log (SQLite, synchronous=FULL)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        grouped, per_batch = await concurrent_rate(
            directory, "grouped", sizes.concurrent_appends, sizes.appenders, max_batch=1000
        )
        single, _ = await concurrent_rate(
            directory, "single", sizes.concurrent_appends // 10, sizes.appenders, max_batch=1
        )
        sequential = await sequential_rate(directory, sizes.sequential_appends)
        verify_seconds, proof_seconds = await verify_times(directory, sizes.verify_records)
    appenders = sizes.appenders
    table.add_row(f"appends/s, {appenders} appenders, group commit", f"{grouped:,.0f}")
    table.add_row("  records per transaction (mean)", f"{per_batch:,.1f}")
    table.add_row(f"appends/s, {appenders} appenders, one commit per record", f"{single:,.0f}")
    table.add_row("appends/s, one awaited append after another", f"{sequential:,.0f}")
    table.add_row("group commit speed-up over one commit per record", f"{grouped / single:,.1f}x")
    table.add_row(f"verify {sizes.verify_records:,} records (s)", f"{verify_seconds:.2f}")
    per_100k = verify_seconds * 100_000 / sizes.verify_records
    table.add_row("verify time per 100k records (s)", f"{per_100k:.2f}")
    table.add_row(
        f"inclusion proof over {sizes.verify_records:,} records (ms)", f"{proof_seconds * 1e3:.0f}"
    )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    arguments = parser.parse_args()
    table = asyncio.run(run(QUICK if arguments.quick else FULL))
    Console().print(table)


if __name__ == "__main__":
    main()
