"""RateLimits end to end: a real ``corral up``, RateLimit objects applied through the API, the
official ``openai`` client, and an upstream that counts (and, for one model, takes its time).

Each test has its own Endpoint and a RateLimit scoped to it (``scope.kind: model``), so the
counters of one test never meet another's. The gateway follows RateLimits through the store's
watch: a test first waits until a response carries the limit's ``x-ratelimit-*`` headers,
which proves the limit is in force and that request counted.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest

from .helpers import CONVERGE_TIMEOUT_S, CORRAL, HELLO, Corral, endpoint, is_ready

pytestmark = pytest.mark.slow

SLOW_S = 3.0  # long enough that all five requests arrive while two are in flight
USAGE = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


@dataclass
class CountingUpstream:
    base_url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, model: str) -> int:
        with self.lock:
            return sum(1 for body in self.bodies if body.get("model") == model)


@contextmanager
def counting_upstream() -> Iterator[CountingUpstream]:
    """OpenAI-shaped answers with fixed usage; requests for model ``slow`` take SLOW_S."""
    state = CountingUpstream()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._json({"object": "list", "data": [{"id": "fast", "object": "model"}]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
            with state.lock:
                state.bodies.append(body)
            if body.get("model") == "slow":
                time.sleep(SLOW_S)
            self._json(
                {
                    "id": "chatcmpl-up",
                    "object": "chat.completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "hi"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": USAGE,
                }
            )

        def _json(self, payload: object) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Corral, CountingUpstream]]:
    root = tmp_path_factory.mktemp("corral-ratelimits")
    server = Corral(root / "state", root / "logs").start()
    try:
        with counting_upstream() as upstream:
            server.wait_ready()
            yield server, upstream
    finally:
        code = server.stop()
    assert code == 0, server.stderr


def rate_limit(name: str, model: str, **limits: int) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "RateLimit",
        "metadata": {"name": name},
        "spec": {"scope": {"kind": "model", "name": model}, **limits},
    }


def serve_model(server: Corral, upstream: CountingUpstream, name: str, model: str) -> None:
    runtime = {"type": "openai", "baseURL": upstream.base_url}
    server.apply(endpoint(name, {model: 100}, runtime=runtime))
    server.wait_for("endpoints", name, is_ready)


def ask(client: openai.OpenAI, model: str, **extra: Any) -> Any:
    """The raw response (headers readable) of one chat request."""
    return client.chat.completions.with_raw_response.create(model=model, messages=HELLO, **extra)


def first_limited_answer(client: openai.OpenAI, model: str, header: str, **extra: Any) -> Any:
    """Ask until an answer carries ``header``: the RateLimit is in force from then on."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        answer = ask(client, model, **extra)
        if header in answer.headers:
            return answer
        assert time.monotonic() < deadline, f"no answer ever carried {header}"
        time.sleep(0.05)


def away_from_a_minute_boundary() -> None:
    # The sliding window weighs the previous minute: start a counted burst early in a minute.
    second = time.time() % 60
    if second > 45:
        time.sleep(60 - second + 0.5)


@pytest.mark.timeout(240)
def test_the_request_after_the_rpm_limit_is_a_rate_limit_error_with_retry_after(
    limited: tuple[Corral, CountingUpstream],
) -> None:
    server, upstream = limited
    server.apply(rate_limit("rpm-five", "rpm-chat", requestsPerMinute=5))
    serve_model(server, upstream, "rpm-chat", "fast")
    away_from_a_minute_boundary()
    with server.openai() as client:
        first = first_limited_answer(client, "rpm-chat", "x-ratelimit-remaining-requests")
        assert first.headers["x-ratelimit-limit-requests"] == "5"
        remaining = int(first.headers["x-ratelimit-remaining-requests"])
        assert 0 <= remaining <= 4
        reached = upstream.count("fast")
        for left in range(remaining - 1, -1, -1):
            answer = ask(client, "rpm-chat")
            assert answer.headers["x-ratelimit-remaining-requests"] == str(left)
            assert answer.parse().choices[0].message.content == "hi"
        with pytest.raises(openai.RateLimitError) as refused:
            ask(client, "rpm-chat")
        second = time.time() % 60
    error = refused.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    assert "RateLimit default/rpm-five" in error.message
    assert "Limit 5" in error.message
    retry_after = int(error.response.headers["retry-after"])
    # All 5 fell in this minute: one more fits once they weigh 4 or less in the next one,
    # 12 s into it (5 * (1 - 12/60) + 1 = 5).
    assert abs(retry_after - (60 - second + 12)) <= 2, (retry_after, second)
    assert error.response.headers["x-ratelimit-limit-requests"] == "5"
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    # The refused request never reached the upstream.
    assert upstream.count("fast") == reached + remaining
    listed = subprocess.run(
        [CORRAL, "get", "rl", "-o", "wide", "--server", server.url, "--token", server.token],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[3:8] == ["SCOPE", "FOR", "RPM", "TPM", "CONCURRENT"]
    (row,) = [row.split() for row in rows if row.startswith("rpm-five ")]
    assert row[3:6] == ["model", "rpm-chat", "5"], row
    server.delete("ratelimits", "rpm-five")
    server.delete("endpoints", "rpm-chat")


@pytest.mark.timeout(240)
def test_concurrent_requests_over_the_limit_are_refused_until_a_slot_frees(
    limited: tuple[Corral, CountingUpstream],
) -> None:
    server, upstream = limited
    server.apply(
        rate_limit("two-at-once", "slow-chat", concurrentRequests=2, requestsPerMinute=10_000)
    )
    serve_model(server, upstream, "slow-chat", "slow")
    with server.openai() as client:
        first_limited_answer(client, "slow-chat", "x-ratelimit-limit-requests")

        def one(_: int) -> str:
            try:
                ask(client, "slow-chat")
            except openai.RateLimitError as error:
                retry = int(error.response.headers["retry-after"])
                concurrent = "concurrent requests" in error.message
                return f"refused type={error.type} concurrent={concurrent} retry={retry}"
            return "answered"

        before = upstream.count("slow")
        with ThreadPoolExecutor(max_workers=5) as pool:
            outcomes = sorted(pool.map(one, range(5)))
        refused = "refused type=requests concurrent=True retry=1"
        assert outcomes == ["answered"] * 2 + [refused] * 3
        assert upstream.count("slow") == before + 2
        # Both slots are free again once the slow answers are in.
        assert ask(client, "slow-chat").parse().choices[0].message.content == "hi"
    server.delete("ratelimits", "two-at-once")
    server.delete("endpoints", "slow-chat")


def admitted_after_correction(client: openai.OpenAI, **extra: Any) -> Any:
    deadline = time.monotonic() + 10
    while True:
        try:
            return ask(client, "tpm-chat", **extra)
        except openai.RateLimitError:
            assert time.monotonic() < deadline, "the charge was never corrected"
            time.sleep(0.05)


@pytest.mark.timeout(240)
def test_tokens_per_minute_charge_the_estimate_then_the_real_usage(
    limited: tuple[Corral, CountingUpstream],
) -> None:
    server, upstream = limited
    server.apply(rate_limit("tpm-hundred", "tpm-chat", tokensPerMinute=100))
    serve_model(server, upstream, "tpm-chat", "fast")
    away_from_a_minute_boundary()
    # "Say hello." is estimated at 10 tokens (3 of text, 4 message framing, 3 reply priming).
    with server.openai() as client:
        first = first_limited_answer(
            client, "tpm-chat", "x-ratelimit-remaining-tokens", max_tokens=60
        )
        assert first.headers["x-ratelimit-limit-tokens"] == "100"
        # 70 estimated again: fits only once the first request's charge was corrected from 70
        # to its real 6 tokens (that lands just after its answer; a refusal counts nothing).
        second = admitted_after_correction(client, max_tokens=60)
        assert second.headers["x-ratelimit-remaining-tokens"] == str(100 - 6 - 70)
        time.sleep(0.2)
        with pytest.raises(openai.RateLimitError) as too_large:
            ask(client, "tpm-chat", max_tokens=95)  # 105 > 100 on its own
        assert too_large.value.type == "tokens"
        assert "Request too large" in too_large.value.message
        with pytest.raises(openai.RateLimitError) as over:
            ask(client, "tpm-chat", max_tokens=85)  # 95 more does not fit next to what was used
        assert over.value.type == "tokens"
        assert over.value.code == "rate_limit_exceeded"
        assert "Rate limit reached for tokens per min (TPM)" in over.value.message
        assert 1 <= int(over.value.response.headers["retry-after"]) <= 120
        assert over.value.response.headers["x-ratelimit-limit-tokens"] == "100"
        # Small requests still fit.
        assert ask(client, "tpm-chat", max_tokens=5).parse().choices[0].message.content == "hi"
    server.delete("ratelimits", "tpm-hundred")
    server.delete("endpoints", "tpm-chat")


def test_a_request_no_rate_limit_applies_to_carries_no_rate_limit_headers(
    limited: tuple[Corral, CountingUpstream],
) -> None:
    server, upstream = limited
    server.apply(rate_limit("elsewhere", "some-other-model", requestsPerMinute=1))
    serve_model(server, upstream, "free-chat", "fast")
    with server.openai() as client:
        for _ in range(3):
            answer = ask(client, "free-chat")
            assert "x-ratelimit-limit-requests" not in answer.headers
    server.delete("ratelimits", "elsewhere")
    server.delete("endpoints", "free-chat")
