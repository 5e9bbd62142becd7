"""``CORRAL_COUNTERS_URL=redis://…``: a real ``corral up`` keeps its rate-limit counters in
Redis, where the limit is enforced from (the keys appear there). Redis that cannot be reached
fails the test (the server does not start): nothing is skipped.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import openai
import pytest
import redis

from .helpers import Corral
from .test_rate_limits_end_to_end import (
    away_from_a_minute_boundary,
    counting_upstream,
    first_limited_answer,
    rate_limit,
    serve_model,
)

pytestmark = pytest.mark.slow

REDIS_URL = os.environ.get("CORRAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.mark.timeout(240)
def test_a_gateway_told_to_use_redis_counts_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_COUNTERS_URL", REDIS_URL)
    name = f"redis-rpm-{secrets.token_hex(4)}"  # fresh counters on every run
    server = Corral(tmp_path / "state", tmp_path / "logs").start()
    try:
        with counting_upstream() as upstream:
            server.wait_ready()
            server.apply(rate_limit(name, "redis-chat", requestsPerMinute=2))
            serve_model(server, upstream, "redis-chat", "fast")
            away_from_a_minute_boundary()
            with server.openai() as client:
                first = first_limited_answer(client, "redis-chat", "x-ratelimit-limit-requests")
                assert first.headers["x-ratelimit-remaining-requests"] == "1"
                client.chat.completions.create(
                    model="redis-chat", messages=[{"role": "user", "content": "hi"}]
                )
                with pytest.raises(openai.RateLimitError):
                    client.chat.completions.create(
                        model="redis-chat", messages=[{"role": "user", "content": "hi"}]
                    )
            client_redis = redis.Redis.from_url(REDIS_URL)
            try:
                keys = list(client_redis.scan_iter(match=f"corral_ratelimit:w:default/{name}/*"))
                assert 1 <= len(keys) <= 2, keys  # one per minute the requests fell in
                assert sum(int(client_redis.get(key) or 0) for key in keys) == 2
            finally:
                client_redis.close()
    finally:
        code = server.stop()
    assert code == 0, server.stderr
    assert not (tmp_path / "state" / "ratelimits.db").exists()
