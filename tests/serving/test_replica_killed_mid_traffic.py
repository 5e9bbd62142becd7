"""kill -9 of a model server under traffic: every request ends (answer or clean error), and the
replica is restarted until the Endpoint is Ready again."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from .helpers import HELLO, Corral, is_ready, replicas

pytestmark = pytest.mark.slow

REQUEST_TIMEOUT_S = 30.0  # a request still open after this counts as hung


def one_request(corral: Corral, index: int, started: threading.Barrier) -> str:
    """What became of one request: 'answered', or the clean error the client got."""
    with corral.openai(timeout=REQUEST_TIMEOUT_S) as client:
        started.wait()
        try:
            if index % 2:
                stream = client.chat.completions.create(
                    model="chat", messages=HELLO, max_tokens=48, temperature=0, stream=True
                )
                with stream:
                    for _ in stream:
                        pass
            else:
                client.chat.completions.create(
                    model="chat", messages=HELLO, max_tokens=48, temperature=0
                )
        except openai.APITimeoutError:
            return "hung"
        except openai.APIStatusError as error:
            return f"status {error.status_code}"
        except openai.APIConnectionError:
            return "connection cut"
    return "answered"


def test_requests_end_and_the_replica_comes_back(corral: Corral) -> None:
    chat = corral.wait_for("endpoints", "chat", is_ready)
    (replica,) = replicas(chat)
    requests = 4
    started = threading.Barrier(requests + 1)
    with ThreadPoolExecutor(requests) as pool:
        outcomes = [pool.submit(one_request, corral, index, started) for index in range(requests)]
        started.wait()
        time.sleep(0.3)  # let the requests reach the model server
        os.kill(replica["pid"], signal.SIGKILL)
        results = [outcome.result(timeout=REQUEST_TIMEOUT_S + 10) for outcome in outcomes]

    assert "hung" not in results
    allowed = {"answered", "connection cut", "status 502", "status 503"}
    assert set(results) <= allowed, results
    assert set(results) != {"answered"}, "the kill interrupted nothing; the test proves nothing"

    back = corral.wait_for(
        "endpoints",
        "chat",
        lambda e: is_ready(e) and bool(replicas(e)) and replicas(e)[0]["restarts"] >= 1,
    )
    assert replicas(back)[0]["pid"] != replica["pid"]
    with corral.openai() as client:
        answer = client.chat.completions.create(model="chat", messages=HELLO, max_tokens=4)
    assert answer.choices[0].message.content
