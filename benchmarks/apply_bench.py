"""``corral apply -f DIR`` of a large manifest tree, end to end, against a running ``corral up``.

Generates a directory of Models and Endpoints (half each, spread over many multi-document
files), starts ``corral up`` on SQLite in a temp dir, and times the real CLI as a user runs it
(process start, parse, local validation, one /apply request, the server's all-or-nothing
transaction, output): first apply (every object created), a re-apply (every object unchanged),
and one with a tenth of the objects changed. The in-process rows show where the CLI's share of
the time goes. The baseline creates the same objects one request at a time through the HTTP
API (httpx, one keep-alive connection) against a fresh server.

    python benchmarks/apply_bench.py [--quick] [--objects N] [--files N]

Goal: 10,000 objects applied in at most 20 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from corral.api.manifest import load_manifests
from corral.api.validation import validate_object

CORRAL = str(Path(sys.executable).with_name("corral"))
GOAL_S = 20.0
GOAL_OBJECTS = 10_000
START_TIMEOUT_S = 60.0


def model_doc(index: int) -> str:
    return (
        "apiVersion: corral.dev/v1alpha1\nkind: Model\n"
        f"metadata:\n  name: model-{index:05d}\n  labels: {{bench: apply, shard: s{index % 16}}}\n"
        f"spec:\n  source: file:///models/model-{index:05d}.gguf\n  contextLength: 4096\n"
        "  license: apache-2.0\n"
    )


def endpoint_doc(index: int, strategy: str = "least-outstanding") -> str:
    # replicas: 0, so the controllers running in `corral up` start no model servers: the
    # benchmark measures applying declarations, not serving 5,000 endpoints.
    return (
        "apiVersion: corral.dev/v1alpha1\nkind: Endpoint\n"
        f"metadata:\n  name: endpoint-{index:05d}\n  labels: {{bench: apply}}\n"
        f"spec:\n  models:\n  - model: model-{index:05d}\n    weight: 100\n"
        f"  replicas: 0\n  routing: {{strategy: {strategy}}}\n"
        "  runtime: {type: openai, baseURL: 'http://127.0.0.1:9/v1'}\n"
    )


def generate(directory: Path, objects: int, files: int, *, changed_every: int = 0) -> None:
    """``objects`` documents over ``files`` files; every ``changed_every``-th Endpoint changed."""
    pairs = objects // 2
    per_file = max(1, -(-pairs // files))
    shutil.rmtree(directory, ignore_errors=True)
    for start in range(0, pairs, per_file):
        shard = directory / f"team-{start // per_file % 10}"
        shard.mkdir(parents=True, exist_ok=True)
        documents = []
        for index in range(start, min(start + per_file, pairs)):
            changed = changed_every and index % changed_every == 0
            strategy = "round-robin" if changed else "least-outstanding"
            documents += [model_doc(index), endpoint_doc(index, strategy)]
        (shard / f"stack-{start:05d}.yaml").write_text("---\n".join(documents))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def corral_up(state_dir: Path) -> Iterator[tuple[str, str]]:
    """A ``corral up`` subprocess; yields (url, admin token) once /readyz answers 200."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    process = subprocess.Popen(
        [CORRAL, "up", "--port", str(port), "--state-dir", str(state_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(timeout=5) as probe:
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"corral up did not start (exit {process.returncode})")
                try:
                    if probe.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
        yield url, (state_dir / "admin.token").read_text().strip()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def timed_cli(*args: str, state_dir: Path) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["CORRAL_STATE_DIR"] = str(state_dir)
    started = time.perf_counter()
    result = subprocess.run(
        [CORRAL, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"corral {' '.join(args)} failed: {result.stderr}")
    return elapsed, result.stdout


def count_actions(output: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in output.splitlines():
        action = line.split()[1]
        counts[action] = counts.get(action, 0) + 1
    return counts


def one_by_one(url: str, token: str, manifests: Path) -> float:
    """The baseline: every object POSTed on its own, in order, on one keep-alive connection."""
    objects = [validate_object(doc.body) for doc in load_manifests([str(manifests)])]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.perf_counter()
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for obj in objects:
            plural = "models" if obj["kind"] == "Model" else "endpoints"
            path = f"/apis/corral.dev/v1alpha1/namespaces/default/{plural}"
            response = client.post(path, content=orjson.dumps(obj))
            if response.status_code != 201:
                raise SystemExit(f"create failed: {response.status_code} {response.text}")
    return time.perf_counter() - started


def in_process_phases(manifests: Path) -> tuple[float, float]:
    started = time.perf_counter()
    documents = load_manifests([str(manifests)])
    loaded = time.perf_counter()
    for document in documents:
        validate_object(document.body, location=document.location)
    return loaded - started, time.perf_counter() - loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 objects instead of 10,000")
    parser.add_argument(
        "--objects", type=int, help="how many objects (half Models, half Endpoints)"
    )
    parser.add_argument("--files", type=int, default=200, help="spread over this many files")
    options = parser.parse_args()
    objects = options.objects or (1_000 if options.quick else GOAL_OBJECTS)

    with tempfile.TemporaryDirectory(prefix="corral-apply-bench-") as scratch:
        root = Path(scratch)
        manifests, changed = root / "manifests", root / "changed"
        generate(manifests, objects, options.files)
        generate(changed, objects, options.files, changed_every=5)
        size_mib = sum(f.stat().st_size for f in manifests.rglob("*.yaml")) / 2**20
        load_s, validate_s = in_process_phases(manifests)

        rows: list[tuple[str, float, Any]] = []
        state = root / "state"
        with corral_up(state):
            create_s, out = timed_cli("apply", "-f", str(manifests), state_dir=state)
            rows.append(("corral apply -f DIR (all created)", create_s, count_actions(out)))
            again_s, out = timed_cli("apply", "-f", str(manifests), state_dir=state)
            rows.append(("corral apply -f DIR (all unchanged)", again_s, count_actions(out)))
            diff_s, out = timed_cli("apply", "-f", str(changed), state_dir=state)
            rows.append(("corral apply -f DIR (10% changed)", diff_s, count_actions(out)))
        with corral_up(root / "baseline-state") as (url, token):
            baseline_s = one_by_one(url, token, manifests)

    print(f"\napply benchmark: {objects} objects in {options.files} files ({size_mib:.1f} MiB)\n")
    print(f"{'what':<44}{'seconds':>10}{'objects/s':>12}  outcome")
    for label, seconds, outcome in rows:
        print(f"{label:<44}{seconds:>10.2f}{objects / seconds:>12.0f}  {outcome}")
    print(f"{'  of which: load YAML (in-process)':<44}{load_s:>10.2f}")
    print(f"{'  of which: validate (in-process)':<44}{validate_s:>10.2f}")
    baseline_label = "baseline: one POST per object (httpx)"
    print(f"{baseline_label:<44}{baseline_s:>10.2f}{objects / baseline_s:>12.0f}")
    print(f"\nbaseline / apply (created): {baseline_s / create_s:.1f}x faster with apply")
    if objects < GOAL_OBJECTS:
        print(f"goal: {GOAL_OBJECTS} objects in <= {GOAL_S:.0f} s (run without --quick to judge)")
    else:
        verdict = "meets" if create_s <= GOAL_S else "MISSES"
        print(f"goal: {GOAL_OBJECTS} objects in <= {GOAL_S:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
