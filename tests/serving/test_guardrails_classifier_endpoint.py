"""A classifier Endpoint as a guardrail, with the real SmolLM2 model on llama.cpp.

Applies ``examples/guardrail-classifier/classifier.yaml`` to the quickstart stack and checks the
plumbing, not the 135M model's judgement: the judge prompt is swapped for one that makes the
model repeat the user's word (temperature 0), so its verdict is known in advance. A flagged
verdict refuses the request (400, the classifier named, counted in the metric), a benign one
lets it through, an answer that is no label refuses with 503; then the labels are swapped and
the same texts get the opposite outcomes, so the model's verdict is what drove the action.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from .helpers import CONVERGE_TIMEOUT_S, Corral, is_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "guardrail-classifier"
# SmolLM2-135M at temperature 0 repeats BANANA, CHERRY and HELLO as they are, and answers
# TOMATO with "I'm glad you": checked against the model before writing this test.
REPEAT = "Repeat the user's message exactly, as one word, and nothing else."


def example() -> dict[str, dict[str, Any]]:
    documents = yaml.safe_load_all((EXAMPLE / "classifier.yaml").read_text())
    return {doc["metadata"]["name"]: doc for doc in documents if doc}


def classifier_events(corral: Corral, action: str) -> float:
    text = corral.api().get("/metrics").text
    pattern = (
        rf'^corral_guardrail_events_total\{{action="{action}",category="classifier",'
        r'direction="input",endpoint="guarded-chat"\} ([0-9.e+]+)$'
    )
    found = re.search(pattern, text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def with_labels(chat: dict[str, Any], flagged: list[str], benign: list[str]) -> dict[str, Any]:
    """The example's chat Endpoint with a judge that repeats the user's word: its answer is
    then known, so the test can name it flagged or benign."""
    chat = {**chat, "spec": {**chat["spec"]}}
    guardrails = chat["spec"]["guardrails"]
    (entry,) = guardrails["classifiers"]
    entry = {
        **entry,
        "systemPrompt": REPEAT,
        "flagged": flagged,
        "benign": benign,
        "onError": "block",
    }
    chat["spec"]["guardrails"] = {**guardrails, "classifiers": [entry]}
    return chat


def ask(client: openai.OpenAI, word: str) -> Any:
    return client.chat.completions.create(
        model="guarded-chat", messages=[{"role": "user", "content": word}], max_tokens=8
    )


def settle(client: openai.OpenAI, word: str, expected: type[Exception] | None) -> Any:
    """Ask until the outcome is ``expected`` (an exception type, or None for an answer): the
    gateway's informer applies a changed Endpoint within moments, not at once."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        try:
            outcome: Any = ask(client, word)
        except (openai.BadRequestError, openai.InternalServerError, openai.NotFoundError) as error:
            outcome = error
        if (expected is None and not isinstance(outcome, Exception)) or (
            expected is not None and isinstance(outcome, expected)
        ):
            return outcome
        assert time.monotonic() < deadline, f"{word}: last outcome {outcome!r}"
        time.sleep(0.2)


def test_the_classifier_endpoints_verdict_decides(corral: Corral) -> None:
    manifests = example()
    chat = manifests["guarded-chat"]
    corral.apply(manifests["smollm2-135m"], manifests["judge"], chat)
    try:
        corral.wait_for("endpoints", "judge", is_ready)
        corral.wait_for("endpoints", "guarded-chat", is_ready)
        blocked_before = classifier_events(corral, "block")
        with corral.openai() as client:
            corral.apply(with_labels(chat, flagged=["BANANA"], benign=["CHERRY", "HELLO"]))
            refused = settle(client, "BANANA", openai.BadRequestError)
            assert refused.code == "guardrail_blocked"
            assert "classifier (classifier) in messages[0].content" in refused.message
            assert classifier_events(corral, "block") == blocked_before + 1
            assert settle(client, "CHERRY", None).choices[0].message.content is not None
            # An answer that is no label at all: no verdict, and onError "block" refuses.
            unavailable = settle(client, "TOMATO", openai.InternalServerError)
            assert unavailable.status_code == 503
            assert unavailable.code == "guardrail_unavailable"
            assert "default/judge gave no verdict" in unavailable.message

            # Same texts, labels swapped: now the judge's CHERRY blocks and BANANA passes.
            corral.apply(with_labels(chat, flagged=["CHERRY"], benign=["BANANA"]))
            assert settle(client, "CHERRY", openai.BadRequestError).code == "guardrail_blocked"
            assert settle(client, "BANANA", None).choices[0].message.content is not None
            assert classifier_events(corral, "block") == blocked_before + 2
    finally:
        corral.delete_and_wait("endpoints", "guarded-chat")
        corral.delete_and_wait("endpoints", "judge")
