"""One RPM limit, three gateway processes on one PostgreSQL: together they admit exactly the
limit, however the requests spread over them.

Process A runs every role (``corral serve --role apiserver,controllers,gateway``), B and C only
the gateway; all share the store's database, where the rate-limit counters live. Needs
PostgreSQL (CORRAL_TEST_POSTGRES_DSN): it fails, never skips, when that is unreachable.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import asyncpg
import httpx
import openai
import pytest

from .helpers import CONVERGE_TIMEOUT_S, CORRAL, HELLO, START_TIMEOUT_S, endpoint, is_ready
from .test_rate_limits_end_to_end import (
    CountingUpstream,
    away_from_a_minute_boundary,
    counting_upstream,
    rate_limit,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

API = "/apis/corral.dev/v1alpha1"
LIMIT = 20
REQUESTS = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Process:
    def __init__(self, argv: list[str], log: Path) -> None:
        self.log_path = log
        self._log: IO[bytes] = log.open("wb")
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready: {self.log_path.read_text()}")

    def stop(self) -> int:
        try:
            if self.process.poll() is None:
                self.process.terminate()
            return self.process.wait(timeout=60)
        finally:
            self._log.close()


@pytest.fixture(scope="module")
def gateways(
    postgres_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[str], str, CountingUpstream]]:
    root = tmp_path_factory.mktemp("corral-shared-limits")
    state = root / "state"
    ports = [free_port() for _ in range(3)]
    serve = [CORRAL, "serve", "--store", postgres_database, "--state-dir", str(state)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    started: list[Process] = []
    with counting_upstream() as upstream:
        try:
            first = Process(
                [*serve, "--role", "apiserver,controllers,gateway", "--port", str(ports[0])],
                root / "a.log",
            )
            started.append(first)
            first.wait_ready(urls[0])
            for port, name in zip(ports[1:], ("b", "c"), strict=True):
                started.append(
                    Process(
                        [*serve, "--role", "gateway", "--port", str(port)], root / f"{name}.log"
                    )
                )
            for process, url in zip(started[1:], urls[1:], strict=True):
                process.wait_ready(url)
            yield urls, (state / "admin.token").read_text().strip(), upstream
        finally:
            codes = [process.stop() for process in started]
            logs = [process.log_path.read_text() for process in started]
    assert codes == [0] * len(started), logs


def test_three_gateway_processes_admit_exactly_the_rpm_limit_together(
    gateways: tuple[list[str], str, CountingUpstream], postgres_database: str
) -> None:
    urls, token, upstream = gateways
    api = httpx.Client(base_url=urls[0], headers={"authorization": f"Bearer {token}"}, timeout=30)
    runtime = {"type": "openai", "baseURL": upstream.base_url}
    for obj in (
        rate_limit("shared-rpm", "shared-chat", requestsPerMinute=LIMIT),
        endpoint("shared-chat", {"fast": 100}, runtime=runtime),
    ):
        applied = api.post(f"{API}/apply", json={"items": [obj]})
        assert applied.status_code == 200, applied.text
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while not is_ready(api.get(f"{API}/namespaces/default/endpoints/shared-chat").json()):
        assert time.monotonic() < deadline, "the Endpoint never became ready"
        time.sleep(0.1)
    away_from_a_minute_boundary()
    clients = [
        openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=60)
        for url in urls
    ]

    def ask(index: int) -> str:
        try:
            answer = clients[index % len(clients)].chat.completions.with_raw_response.create(
                model="shared-chat", messages=HELLO
            )
        except openai.RateLimitError:
            return "refused"
        except openai.NotFoundError:
            return "no route yet"
        return "counted" if "x-ratelimit-limit-requests" in answer.headers else "not limited yet"

    # Each gateway follows the store on its own: wait until every one enforces the limit
    # (the first answer with the headers counted; the ones before did not).
    counted = 0
    for index in range(len(clients)):
        while (outcome := ask(index)) != "counted":
            assert outcome in ("no route yet", "not limited yet"), outcome
            assert time.monotonic() < deadline, f"gateway {index} never enforced the limit"
            time.sleep(0.05)
        counted += 1
    with ThreadPoolExecutor(max_workers=24) as pool:
        outcomes = list(pool.map(ask, range(REQUESTS)))
    for client in clients:
        client.close()
    assert outcomes.count("counted") + counted == LIMIT
    assert outcomes.count("refused") == REQUESTS - (LIMIT - counted)
    assert asyncio.run(_window_total(postgres_database)) == LIMIT
    # Every answered request of every process is one usage record in the shared database.
    answered = upstream.count("fast")
    deadline = time.monotonic() + 10
    while True:
        summary = api.get("/corral/v1/usage", params={"by": "endpoint", "since": "1h"})
        assert summary.status_code == 200, summary.text
        rows = {row["key"]: row for row in summary.json()["items"]}
        row = rows.get("default/shared-chat", {})
        if row.get("requests") == answered or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # the other processes flush every 100 ms
    api.close()
    assert (row["requests"], row["input_tokens"], row["output_tokens"]) == (
        answered,
        3 * answered,
        3 * answered,
    )


async def _window_total(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        total = await connection.fetchval(
            "SELECT sum(used) FROM corral_ratelimit_windows WHERE key = $1",
            "default/shared-rpm/rpm",
        )
    finally:
        await connection.close()
    return int(total)
