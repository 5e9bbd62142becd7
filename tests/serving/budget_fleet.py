"""Several ``corral serve --role gateway`` processes on one PostgreSQL store, one hard Budget.

The budget exactness run of issue 4, shared by ``test_budget_fleet_exactness.py`` and
``benchmarks/budget_bench.py``: the store gets a Team, its ApiKey, a Policy letting the team
invoke, an ``openai``-runtime Endpoint in front of the metered upstream (``budget_upstream``)
and a hard token Budget for the team; then ``processes`` gateway processes start on that store
(their budget counters in the store's database, or where ``counters_url`` says through
``CORRAL_COUNTERS_URL``) and ``requests`` requests are sent to them at once, spread evenly.
The outcome says what came back and what the ledger settled.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
from cryptography.fernet import Fernet

from corral.api.validation import validate_object
from corral.identity import generate_api_key
from corral.store import open_store

CORRAL = str(Path(sys.executable).with_name("corral"))
HELLO = [{"role": "user", "content": "Say hello."}]
HOLD_TOKENS = 20
"""What one request holds: HELLO is estimated at 10 prompt tokens, plus max_tokens=10."""
MAX_TOKENS = 10
START_TIMEOUT_S = 60.0
_LISTENING = re.compile(r"listening at (http://\S+),")


@dataclass
class FleetOutcome:
    limit: int
    requests: int
    successes: int = 0
    answered_tokens: int = 0
    """The sum of ``usage.total_tokens`` of every successful answer."""
    refusals: list[tuple[int, str, str | None, str]] = field(default_factory=list)
    """(status, error code, Retry-After, message) of every answer that was not a 200."""
    spent: int = 0
    held: int = 0
    settled_reservations: int = 0
    seconds: float = 0.0

    @property
    def over_limit(self) -> int:
        return max(self.spent - self.limit, 0)


def manifest(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    metadata = {"name": name, "namespace": "default"}
    return {"apiVersion": "corral.dev/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}


async def seed_store(database_url: str, upstream_base: str, budget: str, limit: int) -> str:
    """Write the team, key, policy, Endpoint (ready, at the upstream) and Budget; the key."""
    key = generate_api_key()
    cedar = 'permit (principal in Team::"default/fleet", action, resource is Endpoint);'
    endpoint_spec = {
        "models": [{"model": "gpt-4o-mini", "weight": 100}],
        "runtime": {"type": "openai", "baseURL": upstream_base},
    }
    budget_spec = {
        "scope": {"kind": "team", "name": "fleet"},
        "limits": {"tokens": limit},
        "period": "total",
        "mode": "hard",
    }
    key_spec = {"team": "fleet", "prefix": key.prefix, "salt": key.salt, "hash": key.hash}
    objects = [
        manifest("Team", "fleet", {}),
        manifest("ApiKey", "fleet-key", key_spec),
        manifest("Policy", "fleet-invokes", {"cedar": cedar}),
        manifest("Endpoint", "metered", endpoint_spec),
        manifest("Budget", budget, budget_spec),
    ]
    store = await open_store(database_url)
    try:
        outcomes = await store.apply([validate_object(obj) for obj in objects])
        endpoint = next(o.object for o in outcomes if o.object["kind"] == "Endpoint")
        replica = {
            "name": "default.metered.gpt-4o-mini.0",
            "model": "gpt-4o-mini",
            "state": "Ready",
            "ready": True,
            "apiBase": upstream_base,
        }
        await store.update_status({**endpoint, "status": {"replicas": [replica]}})
    finally:
        await store.close()
    return key.plaintext


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    stderr_path: Path
    url: str = ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def start_gateways(
    database_url: str, root: Path, processes: int, counters_url: str | None
) -> list[Gateway]:
    # Processes sharing a store share its secret key (Secrets are sealed with it).
    env = {**os.environ, "CORRAL_SECRET_KEY": Fernet.generate_key().decode()}
    env.pop("CORRAL_COUNTERS_URL", None)
    if counters_url is not None:
        env["CORRAL_COUNTERS_URL"] = counters_url
    gateways = []
    for index in range(processes):
        state = root / f"gateway-{index}"
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        argv = [CORRAL, "serve", "--role", "gateway", "--store", database_url, "--port", "0"]
        argv += ["--state-dir", str(state), "--log-level", "info"]
        stderr_path = state / "stderr.log"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        gateways.append(Gateway(process, stderr_path))
    return gateways


def wait_ready(gateways: list[Gateway]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    for gateway in gateways:
        while True:
            if gateway.process.poll() is not None:
                raise AssertionError(f"a gateway exited: {gateway.stderr()}")
            found = _LISTENING.search(gateway.stderr())
            if found is not None:
                gateway.url = found.group(1)
                try:
                    if httpx.get(f"{gateway.url}/readyz", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise AssertionError(f"a gateway never became ready: {gateway.stderr()}")
            time.sleep(0.05)


def stop_gateways(gateways: list[Gateway]) -> list[int]:
    for gateway in gateways:
        if gateway.process.poll() is None:
            gateway.process.terminate()
    codes = []
    for gateway in gateways:
        try:
            codes.append(gateway.process.wait(timeout=30))
        except subprocess.TimeoutExpired:
            gateway.process.kill()
            codes.append(gateway.process.wait(timeout=30))
    return codes


async def fire(gateways: list[Gateway], key: str, requests: int, outcome: FleetOutcome) -> None:
    """Send ``requests`` at once, round-robin over the gateways; record what came back."""
    limits = httpx.Limits(max_connections=requests, max_keepalive_connections=requests)
    clients = [httpx.AsyncClient(base_url=g.url, timeout=120, limits=limits) for g in gateways]
    body = {"model": "metered", "messages": HELLO, "max_tokens": MAX_TOKENS}
    headers = {"authorization": f"Bearer {key}"}
    start = asyncio.Event()

    async def one(index: int) -> None:
        await start.wait()
        client = clients[index % len(clients)]
        answer = await client.post("/v1/chat/completions", json=body, headers=headers)
        if answer.status_code == 200:
            outcome.successes += 1
            outcome.answered_tokens += int(answer.json()["usage"]["total_tokens"])
            return
        try:
            error = answer.json()["error"]
            code, message = str(error.get("code")), str(error.get("message"))
        except (ValueError, KeyError, TypeError, AttributeError):
            code, message = "?", answer.text
        outcome.refusals.append((answer.status_code, code, answer.headers.get("retry-after"),
                                 message))  # fmt: skip

    try:
        tasks = [asyncio.create_task(one(index)) for index in range(requests)]
        await asyncio.sleep(0)
        started = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        outcome.seconds = time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()


async def read_counters(
    database_url: str, counters_url: str | None, budget: str
) -> tuple[int, int, int]:
    """(spent, held, settled reservations) of the budget, once its holds are all returned."""
    deadline = time.monotonic() + 30
    while True:
        if counters_url is not None and counters_url.startswith("redis"):
            found = await _redis_counters(counters_url, budget)
        else:
            found = await _postgres_counters(counters_url or database_url, budget)
        if found[1] == 0 or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def _postgres_counters(url: str, budget: str) -> tuple[int, int, int]:
    connection = await asyncpg.connect(url)
    try:
        key = f"default/{budget}/total/tokens"
        row = await connection.fetchrow(
            "SELECT spent, held FROM corral_budget_counters WHERE key = $1", key
        )
        settled = await connection.fetchval(
            "SELECT count(*) FROM corral_budget_reservations"
            " WHERE state = 'settled' AND $1 = ANY(hold_keys)",
            key,
        )
    finally:
        await connection.close()
    spent, held = (0, 0) if row is None else (int(row["spent"]), int(row["held"]))
    return spent, held, int(settled)


async def _redis_counters(url: str, budget: str) -> tuple[int, int, int]:
    client = aioredis.Redis.from_url(url)
    try:
        spent, held = await client.hmget(
            f"corral_budget:c:default/{budget}/total/tokens", ["spent", "held"]
        )
        settled = 0
        async for record in client.scan_iter(match="corral_budget:r:*", count=1000):
            fields = await client.hgetall(record)
            hold_field = f"h:corral_budget:c:default/{budget}/total/tokens".encode()
            if fields.get(b"state") == b"settled" and hold_field in fields:
                settled += 1
    finally:
        await client.aclose()
    return int(spent or 0), int(held or 0), settled


async def forget_redis_budget(url: str, budget: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await client.delete(f"corral_budget:c:default/{budget}/total/tokens")
    finally:
        await client.aclose()


async def run_fleet(
    database_url: str,
    upstream_base: str,
    root: Path,
    *,
    processes: int = 4,
    requests: int = 400,
    fits: int = 100,
    counters_url: str | None = None,
) -> FleetOutcome:
    """The whole exactness run; ``fits`` worst-case holds make the limit."""
    budget = f"fleet-{secrets.token_hex(4)}"
    limit = HOLD_TOKENS * fits
    key = await seed_store(database_url, upstream_base, budget, limit)
    outcome = FleetOutcome(limit=limit, requests=requests)
    gateways = start_gateways(database_url, root, processes, counters_url)
    try:
        await asyncio.to_thread(wait_ready, gateways)
        await fire(gateways, key, requests, outcome)
        spent, held, settled = await read_counters(database_url, counters_url, budget)
        outcome.spent, outcome.held, outcome.settled_reservations = spent, held, settled
    finally:
        codes = stop_gateways(gateways)
        if counters_url is not None and counters_url.startswith("redis"):
            await forget_redis_budget(counters_url, budget)
    problems = [g.stderr() for g, code in zip(gateways, codes, strict=True) if code != 0]
    if problems:
        raise AssertionError(f"a gateway did not stop cleanly: {problems[0]}")
    return outcome
