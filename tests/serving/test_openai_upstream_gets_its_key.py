"""An ``openai``-runtime Endpoint: corral calls the upstream at its base URL with the key from the
Secret, and the key shows up nowhere else (status, logs, the client's view)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest

from .fake_upstream import FakeUpstream, fake_upstream
from .helpers import CONVERGE_TIMEOUT_S, HELLO, Corral, endpoint, is_ready, replicas

pytestmark = pytest.mark.slow

KEY = "sk-upstream-e2e-4f1c"


@pytest.fixture
def hosted(corral: Corral) -> Iterator[tuple[Corral, FakeUpstream]]:
    with fake_upstream(KEY) as upstream:
        runtime = {"type": "openai", "baseURL": upstream.base_url, "secretRef": "hosted-key"}
        corral.apply(endpoint("hosted", {"up-model": 100}, runtime=runtime))
        try:
            yield corral, upstream
        finally:
            corral.delete_and_wait("endpoints", "hosted")
            corral.delete("secrets", "hosted-key")


def refused_until(client: openai.OpenAI, wanted: str) -> openai.APIStatusError:
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        try:
            client.chat.completions.create(model="hosted", messages=HELLO)
        except openai.APIStatusError as error:
            if wanted in error.message or time.monotonic() > deadline:
                return error
        else:
            raise AssertionError("the upstream was called without its key")
        time.sleep(0.1)


def test_the_secrets_key_reaches_the_upstream_and_nothing_else(
    hosted: tuple[Corral, FakeUpstream],
) -> None:
    corral, upstream = hosted
    with corral.openai() as client:
        refused = refused_until(client, "Secret default/hosted-key")
        assert refused.status_code == 503
        assert "cannot call its upstream" in refused.message
        assert upstream.chats() == []

        corral.apply(
            {
                "apiVersion": "corral.dev/v1alpha1",
                "kind": "Secret",
                "metadata": {"name": "hosted-key"},
                "spec": {"type": "api-key", "data": {"apiKey": KEY}},
            }
        )
        ready = corral.wait_for("endpoints", "hosted", is_ready)
        answer = client.chat.completions.create(model="hosted", messages=HELLO)
        stream = client.chat.completions.create(model="hosted", messages=HELLO, stream=True)
        with stream:
            streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream)

    assert answer.choices[0].message.content == "upstream says: Say hello."
    assert answer.model == "up-model"
    assert streamed.strip() == "upstream says: Say hello."
    chats = upstream.chats()
    assert [(seen.path, seen.body["model"]) for seen in chats] == [
        ("/v1/chat/completions", "up-model")
    ] * 2
    assert {seen.headers["authorization"] for seen in chats} == {f"Bearer {KEY}"}
    assert all(corral.token not in str(seen.headers) for seen in upstream.requests)

    (replica,) = replicas(ready)
    assert replica["apiBase"] == upstream.base_url
    assert KEY not in str(corral.get("endpoints", "hosted"))
    assert KEY not in corral.stderr
