"""One controller-manager replica for the leader-election tests, run as its own process.

``python leader_process.py STORE_URL LOG_PATH``: runs a manager with leader election whose
controller reconciles every Model in a loop, appending ``<pid> start|end <key>`` lines to
LOG_PATH around each reconcile. SIGTERM stops it cleanly (releasing the lease).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from prometheus_client import CollectorRegistry

from corral.api.objects import ObjectKey
from corral.controlplane import Controller, Manager, Result
from corral.store import open_store


def append(log_path: str, line: str) -> None:
    # One small O_APPEND write per line: lines from both processes never interleave mid-line.
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(line + "\n")


async def main(store_url: str, log_path: str) -> None:
    pid = os.getpid()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    store = await open_store(store_url)
    try:

        async def reconcile(key: ObjectKey) -> Result:
            append(log_path, f"{pid} start {key}")
            await asyncio.sleep(0.05)
            append(log_path, f"{pid} end {key}")
            return Result(requeue_after=0.1)

        manager = Manager(
            store, identity=f"replica-{pid}", leader_election=True, registry=CollectorRegistry()
        )
        manager.add(Controller("ticker", for_kind="Model", reconciler=reconcile))
        await manager.run(stop)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
