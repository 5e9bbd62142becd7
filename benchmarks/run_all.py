"""Run every benchmark in turn and print their tables (``make bench``).

Each benchmark is its own script with its own goals in its docstring; this runner only calls
them one after another, so a table can be regenerated alone too. ``--quick`` is passed through.
The machine these run on is small and often shared: read medians and ratios, not single runs.

    python benchmarks/run_all.py [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "store_bench",
    "apiserver_bench",
    "apply_bench",
    "startup_bench",
    "gateway_bench",
    "serving_bench",
    "sched_bench",
    "cel_bench",
    "claims_bench",
    "identity_bench",
    "policy_bench",
    "guardrails_eval",
    "audit_bench",
    "budget_bench",
    "telemetry_bench",
    "ratelimit_bench",
    "guardrails_stage_bench",
    "gateway_peers_bench",
    "agents_bench",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller inputs")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    args = parser.parse_args()
    available = [name for name in ORDER if (HERE / f"{name}.py").exists()]
    chosen = args.only or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        parser.error(
            f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(available)}"
        )
    failed = []
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        command = [sys.executable, str(HERE / f"{name}.py")] + (["--quick"] if args.quick else [])
        if subprocess.call(command) != 0:
            failed.append(name)
        print(f"--- {name}: {time.monotonic() - started:.0f} s", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
