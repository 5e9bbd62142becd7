"""``EndpointClassifier``: a classifier Endpoint is asked at its ready replicas, in turn, with the
judge prompt and temperature 0; what it answers becomes a finding, no finding, or an error that
does not repeat the answer. The HTTP seam is an ``httpx.MockTransport`` here; the end-to-end test
with the real model is tests/serving/test_guardrails_classifier_endpoint.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from corral.api.kinds.endpoint import ClassifierGuardrailSpec
from corral.gateway import EndpointRoute, compile_endpoint
from corral.guardrails import ClassifierError
from corral.server.guardrail_classifier import EndpointClassifier


def judge_route(*addresses: str) -> EndpointRoute:
    replicas = [
        {"name": f"judge-{i}", "model": "tiny", "ready": True, "state": "Ready", "apiBase": a}
        for i, a in enumerate(addresses)
    ]
    return compile_endpoint(
        {
            "metadata": {"name": "judge", "namespace": "safety"},
            "spec": {"models": [{"model": "tiny", "weight": 100}], "runtime": {"type": "llamacpp"}},
            "status": {"replicas": replicas},
        }
    )


def classify(
    answer: str, routes: dict[str, EndpointRoute], text: str = "hello", **spec: Any
) -> tuple[list[Any], list[dict[str, Any]], EndpointClassifier]:
    seen: list[dict[str, Any]] = []

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append({"url": str(request.url), **json.loads(request.content)})
        message = {"role": "assistant", "content": answer}
        return httpx.Response(200, json={"choices": [{"index": 0, "message": message}]})

    async def run() -> tuple[list[Any], EndpointClassifier]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(reply)) as client:
            entry = ClassifierGuardrailSpec.model_validate({"endpoint": "safety/judge", **spec})
            classifier = EndpointClassifier(entry, "default", routes.get, client)
            found = [await classifier.scan(text, "messages[0].content") for _ in range(3)]
            return found, classifier

    found, classifier = asyncio.run(run())
    return found, seen, classifier


def test_replicas_are_asked_in_turn_with_the_judge_prompt() -> None:
    routes = {"safety/judge": judge_route("http://a:1/v1", "http://b:2/v1")}
    found, seen, classifier = classify(
        "UNSAFE, clearly", routes, systemPrompt="Judge it.", flagged=["UNSAFE"], maxTokens=3
    )
    assert classifier.calls == 3
    assert [s["url"] for s in seen] == [
        "http://a:1/v1/chat/completions",
        "http://b:2/v1/chat/completions",
        "http://a:1/v1/chat/completions",
    ]
    assert seen[0]["model"] == "tiny"
    assert seen[0]["temperature"] == 0
    assert seen[0]["max_tokens"] == 3
    assert seen[0]["messages"] == [
        {"role": "system", "content": "Judge it."},
        {"role": "user", "content": "hello"},
    ]
    finding = found[0][0]
    assert (finding.category, finding.type, finding.location) == (
        "classifier",
        "classifier",
        "messages[0].content",
    )


def test_benign_labels_find_nothing_and_other_answers_are_errors_without_the_answer() -> None:
    routes = {"safety/judge": judge_route("http://a:1/v1")}
    found, _, _ = classify("safe", routes)
    assert found == [[], [], []]
    with pytest.raises(ClassifierError) as refused:
        classify("My secret prompt is xyz", routes)
    assert "xyz" not in str(refused.value)
    assert "none of the labels" in str(refused.value)


def test_a_missing_or_unready_classifier_is_an_error_naming_it() -> None:
    with pytest.raises(ClassifierError, match="safety/judge does not exist"):
        classify("SAFE", {})
    with pytest.raises(ClassifierError, match="safety/judge"):
        classify("SAFE", {"safety/judge": judge_route()})
