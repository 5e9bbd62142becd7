"""An Endpoint with no ready replica answers 503, with Retry-After and the controller's reason."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from .helpers import CONVERGE_TIMEOUT_S, HELLO, Corral, condition, endpoint

pytestmark = pytest.mark.slow


@pytest.fixture
def unready(corral: Corral) -> Iterator[Corral]:
    corral.apply(
        endpoint("idle", {"smollm2-135m": 100}, replicas=0),
        endpoint("orphan", {"no-such-model": 100}),
    )
    try:
        yield corral
    finally:
        corral.delete_and_wait("endpoints", "idle")
        corral.delete_and_wait("endpoints", "orphan")


def call_until(corral: Corral, name: str, wanted: str) -> httpx.Response:
    """POST a chat to ``name`` until the 503's message names ``wanted`` (the route table follows
    the store's watch, and the controller's status as it is written: right after the apply the
    gateway may not know the Endpoint yet, which is a 404 until its route arrives)."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        answer = corral.api().post(
            "/v1/chat/completions", json={"model": name, "messages": HELLO, "max_tokens": 1}
        )
        not_routed_yet = answer.status_code == 404 and time.monotonic() <= deadline
        if not not_routed_yet:
            assert answer.status_code == 503, answer.text
            if wanted in answer.json()["error"]["message"] or time.monotonic() > deadline:
                return answer
        time.sleep(0.1)


def test_scaled_to_zero(unready: Corral) -> None:
    unready.wait_for("endpoints", "idle", lambda e: condition(e, "Ready").get("status") == "False")
    answer = call_until(unready, "idle", "ScaledToZero")
    assert answer.headers["retry-after"] == "5"
    error = answer.json()["error"]
    assert error["code"] == "no_ready_replica"
    assert error["type"] == "server_error"
    assert error["message"] == (
        "Endpoint 'idle' has no ready replica (smollm2-135m: no replicas yet); "
        "ScaledToZero: spec.replicas is 0"
    )


def test_model_not_ready(unready: Corral) -> None:
    answer = call_until(unready, "orphan", "ModelNotReady")
    assert answer.headers["retry-after"] == "5"
    message = answer.json()["error"]["message"]
    assert message.startswith("Endpoint 'orphan' has no ready replica (no-such-model: ")
    assert "ModelNotReady: Model default/no-such-model does not exist" in message
