"""``corral up`` start-up: from launching the process to ``/readyz`` answering 200.

Each run starts ``corral up`` on a free port and polls ``/readyz`` every few milliseconds;
"fresh" runs get an empty state dir (token and database created), "warm" runs reuse one. The
baselines bound what any Python server could do here: the interpreter importing uvicorn, and a
bare Starlette app on uvicorn (uvloop, httptools) answering its own /readyz.

    python benchmarks/startup_bench.py [--quick] [--runs N]

Goal: median start → /readyz 200 at most 2 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CORRAL = str(Path(sys.executable).with_name("corral"))
GOAL_S = 2.0
POLL_S = 0.005
TIMEOUT_S = 60.0

BARE_SERVER = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

async def readyz(request):
    return PlainTextResponse("ok")

app = Starlette(routes=[Route("/readyz", readyz)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def time_to_ready(command: list[str], port: int) -> float:
    """Seconds from launching ``command`` until GET /readyz on ``port`` answers 200."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    url = f"http://127.0.0.1:{port}/readyz"
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with httpx.Client(timeout=5) as client:
            while True:
                try:
                    if client.get(url).status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                if process.poll() is not None:
                    raise SystemExit(f"{command[0]} exited with {process.returncode}")
                if time.perf_counter() - started > TIMEOUT_S:
                    raise SystemExit(f"{command[0]} was not ready after {TIMEOUT_S} s")
                time.sleep(POLL_S)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def time_process(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def corral_up(state_dir: Path) -> float:
    port = free_port()
    return time_to_ready(
        [CORRAL, "up", "--host", "127.0.0.1", "--port", str(port), "--state-dir", str(state_dir)],
        port,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs of each instead of 7")
    parser.add_argument("--runs", type=int, help="runs of each measurement")
    options = parser.parse_args()
    runs = options.runs or (3 if options.quick else 7)

    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="corral-startup-bench-") as scratch:
        root = Path(scratch)
        results["python -c 'import uvicorn'"] = [
            time_process([sys.executable, "-c", "import uvicorn"]) for _ in range(runs)
        ]
        results["bare starlette+uvicorn -> /readyz"] = [
            time_to_ready([sys.executable, "-c", BARE_SERVER, str(port)], port)
            for port in (free_port() for _ in range(runs))
        ]
        results["corral up -> /readyz (fresh state dir)"] = [
            corral_up(root / f"fresh-{run}") for run in range(runs)
        ]
        corral_up(root / "warm")
        results["corral up -> /readyz (existing state)"] = [
            corral_up(root / "warm") for _ in range(runs)
        ]

    print(f"\nstart-up benchmark: {runs} runs each (seconds)\n")
    print(f"{'what':<42}{'median':>9}{'min':>9}{'max':>9}")
    for label, samples in results.items():
        print(
            f"{label:<42}{statistics.median(samples):>9.3f}{min(samples):>9.3f}{max(samples):>9.3f}"
        )
    corral = statistics.median(results["corral up -> /readyz (existing state)"])
    bare = statistics.median(results["bare starlette+uvicorn -> /readyz"])
    print(f"\ncorral up / bare server: {corral / bare:.1f}x")
    verdict = "meets" if corral <= GOAL_S else "MISSES"
    print(f"goal: median <= {GOAL_S:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
