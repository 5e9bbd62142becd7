"""The official openai client on ``corral up``'s URL/v1 talks to a real llama.cpp model."""

from __future__ import annotations

import openai
import pytest

from .helpers import HELLO, Corral

pytestmark = pytest.mark.slow


def test_models_list_shows_the_endpoint(corral: Corral) -> None:
    with corral.openai() as client:
        listed = client.models.list()
    assert "chat" in [entry.id for entry in listed.data]
    assert {entry.owned_by for entry in listed.data} == {"corral"}


def test_chat_completion_returns_real_text_named_after_the_version(corral: Corral) -> None:
    with corral.openai() as client:
        answer = client.chat.completions.create(
            model="chat", messages=HELLO, max_tokens=8, temperature=0
        )
    text = answer.choices[0].message.content
    assert text
    assert text.strip()
    assert answer.model == "smollm2-135m"  # the Model version that answered
    assert answer.usage is not None
    assert 0 < answer.usage.completion_tokens <= 8


def test_streamed_chat_completion_arrives_in_chunks(corral: Corral) -> None:
    # Long enough to stream past the output guardrails' hold-back (they keep up to ~80
    # characters that could still become an email or a key, see docs/guardrails.md): an
    # 8-token answer would arrive whole in the last chunk.
    poem = [{"role": "user", "content": "Write a short poem about the sea."}]
    with corral.openai() as client:
        stream = client.chat.completions.create(
            model="chat", messages=poem, max_tokens=64, temperature=0, stream=True
        )
        with stream:
            deltas = [chunk.choices[0].delta.content for chunk in stream if chunk.choices]
    pieces = [delta for delta in deltas if delta]
    assert len(pieces) >= 2
    assert "".join(pieces).strip()


def test_a_stream_that_asks_for_usage_ends_with_a_usage_chunk(corral: Corral) -> None:
    # llama-cpp-python's server ignores stream_options: the gateway supplies the chunk.
    with corral.openai() as client:
        stream = client.chat.completions.create(
            model="chat",
            messages=HELLO,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        with stream:
            chunks = list(stream)
    *answer, last = chunks
    assert any(chunk.choices and chunk.choices[0].delta.content for chunk in answer)
    assert all(chunk.usage is None for chunk in answer)
    assert last.choices == []
    assert last.usage is not None
    assert 0 < last.usage.completion_tokens <= 8
    assert last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert last.model == "smollm2-135m"


def test_unknown_model_is_404_model_not_found(corral: Corral) -> None:
    with corral.openai() as client, pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="no-such-endpoint", messages=HELLO, max_tokens=1)
    assert raised.value.status_code == 404
    assert raised.value.code == "model_not_found"


def test_a_bad_key_is_401(corral: Corral) -> None:
    with corral.openai(api_key="not-the-admin-token") as client:
        with pytest.raises(openai.AuthenticationError) as raised:
            client.chat.completions.create(model="chat", messages=HELLO, max_tokens=1)
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"
