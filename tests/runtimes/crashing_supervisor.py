"""Starts one fake replica under a Supervisor, prints its pid, then dies without cleaning up.

Run as ``python crashing_supervisor.py STATE_DIR MODEL_FILE``: it simulates ``corral up``
crashing while a model server runs, for the orphan tests.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from corral.runtimes import LlamaCppProvider, ReplicaSpec, ReplicaStatus, Supervisor

FAKE_SERVER = Path(__file__).with_name("fake_server.py")


async def main(state_dir: Path, model_file: str) -> None:
    provider = LlamaCppProvider(launcher=(sys.executable, str(FAKE_SERVER)))
    ready = asyncio.Event()
    ready_pids: list[int | None] = []

    def on_change(status: ReplicaStatus) -> None:
        if status.ready:
            ready_pids.append(status.pid)
            ready.set()

    supervisor = Supervisor(state_dir, on_change, providers={"llamacpp": provider})
    spec = ReplicaSpec(
        name="default.chat.fake.0",
        namespace="default",
        endpoint="chat",
        model="fake-model",
        runtime="llamacpp",
        model_path=model_file,
    )
    await supervisor.ensure({spec.name: spec})
    async with asyncio.timeout(20):
        await ready.wait()
    print(ready_pids[0], flush=True)
    # No stop_all, no cleanup: exactly what a crash leaves behind.
    os._exit(1)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
