"""Classifier Endpoints as guardrails: a judge model served by corral screens another's inputs.

``spec.guardrails.classifiers`` of an Endpoint names other Endpoints served by this corral; the
guardrails extension builds one :class:`EndpointClassifier` per entry. It is a
:class:`~corral.guardrails.ClassifierScanner`: the library's
:class:`~corral.guardrails.ChatClassifierScanner` asks the model (the judge prompt as the system
message, the text as the user message, temperature 0) through
:func:`~corral.guardrails.openai_chat_completion`, and turns a flagged label into a finding.

The call goes straight to a ready replica of the classifier Endpoint (``{apiBase}/chat/
completions``, model = the replica's served name), not through the gateway's own URL, because:

- a guardrail check is the platform's call, not the caller's: it must not spend the caller's
  budget or rate limit, nor be refused by the caller's policies, nor be screened by the
  classifier Endpoint's own guardrails (which could recurse);
- extensions hold no gateway credential and start before the gateway listens;
- it saves a hop and a second pass through every stage (the classifier runs on every request).

Replicas come from the route the extension compiles from the same Endpoint informer, so the
classifier follows scale-up, restarts and deletion like the gateway does; replicas are taken in
turn. The upstream key of an ``openai``-runtime classifier is not known here (Secrets are not
followed), so a classifier must be a locally served Endpoint (llamacpp, vllm) or a keyless one.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence

import httpx

from corral.api.kinds.endpoint import ClassifierGuardrailSpec
from corral.gateway import EndpointRoute
from corral.guardrails import (
    ChatClassifierScanner,
    ClassifierError,
    Finding,
    openai_chat_completion,
)
from corral.guardrails.classifier import INJECTION_CLASSIFIER_PROMPT, ChatMessage

_log = logging.getLogger(__name__)

RouteLookup = Callable[[str], EndpointRoute | None]
"""The current compiled route of a classifier Endpoint ('namespace/name'), if there is one."""


class EndpointClassifier:
    """A :class:`~corral.guardrails.ClassifierScanner` backed by an Endpoint of this corral."""

    def __init__(
        self,
        spec: ClassifierGuardrailSpec,
        namespace: str,
        routes: RouteLookup,
        client: httpx.AsyncClient,
    ) -> None:
        self.spec = spec
        self.target = spec.endpoint if "/" in spec.endpoint else f"{namespace}/{spec.endpoint}"
        self.name = f"classifier:{self.target}"
        self.calls = 0
        """How many judgements were asked of the model (tests and debugging read it)."""
        self._routes = routes
        self._client = client
        self._turn = itertools.count()
        self._judge = ChatClassifierScanner(
            self._complete,
            name="classifier",
            system_prompt=spec.systemPrompt or INJECTION_CLASSIFIER_PROMPT,
            flagged=spec.flagged,
            benign=spec.benign,
        )

    async def scan(self, text: str, location: str) -> list[Finding]:
        """Findings for ``text`` (type ``classifier``, the label in ``detail``).

        A reply that is no label raises ClassifierError without the reply's text (it may echo
        the judge prompt or the caller's text back into an error message); the log has it."""
        try:
            return await self._judge.scan(text, location)
        except _Unavailable:
            raise
        except ClassifierError as error:
            _log.warning("guardrail %s: %s", self.name, error)
            labels = ", ".join([*self.spec.flagged, *self.spec.benign])
            raise ClassifierError(f"its answer is none of the labels {labels}") from None

    async def _complete(self, messages: Sequence[ChatMessage]) -> str:
        route = self._routes(self.target)
        if route is None:
            raise _Unavailable(f"classifier Endpoint {self.target} does not exist")
        replicas = [(v.model, a) for v in route.serving for a in v.addresses]
        if not replicas:
            reason = route.unavailable_reason or "no ready replica"
            raise _Unavailable(f"classifier Endpoint {self.target}: {reason}")
        model, address = replicas[next(self._turn) % len(replicas)]
        api_key = _bearer(route.upstream_headers)
        complete = openai_chat_completion(
            self._client,
            f"{address}/chat/completions",
            model,
            api_key=api_key,
            max_tokens=self.spec.maxTokens,
        )
        self.calls += 1
        try:
            return await complete(messages)
        except ClassifierError as error:
            raise _Unavailable(str(error)) from error


class _Unavailable(ClassifierError):
    """The classifier Endpoint could not be asked (as opposed to: it answered no label)."""


def _bearer(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization" and value.startswith(b"Bearer "):
            return value[7:].decode("latin-1")
    return None
