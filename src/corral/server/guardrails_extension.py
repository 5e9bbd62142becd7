"""The guardrails extension: each Endpoint's input and output scanners, on every gateway request.

An Endpoint informer (list, then the store's watch) compiles ``spec.guardrails`` of every
Endpoint into an :class:`EndpointGuardrails` off the request path: a
:class:`~corral.guardrails.Guardrails` for inputs, one for outputs (injection heuristics never
judge model prose), and the classifier Endpoints it names (``corral.server.guardrail_classifier``).
Guardrails are on by default: an Endpoint without ``spec.guardrails`` gets the input defaults of
``GuardrailConfig()`` (PII, secrets and Unicode redacted, injection blocked) and the output
defaults of ``OUTPUT_DEFAULTS``; ``enabled: false`` turns them off. An Endpoint the informer has
not seen yet is screened with the defaults, never not at all.

The stage runs innermost, right before forwarding:

- input: every text of the request (``corral.server.guardrail_payload``) is scanned by the regex
  scanners, then, unless that already blocks, judged by the classifier Endpoints (user, tool and
  prompt texts; not the system prompt or earlier assistant turns), concurrently. A ``block``
  finding refuses the request with 400 ``invalid_request_error`` / ``guardrail_blocked`` naming
  the finding types and locations (never the text); ``redact`` rewrites the payload
  (``call.payload`` and ``call.body``); ``log`` only records. A classifier that fails or times
  out refuses with 503 ``guardrail_unavailable`` unless its ``onError`` is ``allow``.
- output: a response hook (``corral.server.guardrail_output``) screens the answer of chat and
  completion requests, streamed or not.

Every request with findings counts once per (direction, category, action) in
``corral_guardrail_events_total{endpoint, direction, category, action}`` (endpoint names bounded)
and, when the audit extension runs, becomes an audit record ``guardrail.block`` /
``guardrail.redact`` / ``guardrail.log`` on ``Endpoint/<ns>/<name>`` with the finding types and
locations, never the matched text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from prometheus_client import Counter

from corral.api import Object
from corral.api.kinds.endpoint import ENDPOINT, GuardrailAction, GuardrailsSpec
from corral.audit import AuditEvent
from corral.controlplane import Informer, InformerEvent
from corral.gateway import Call, EndpointRoute, GatewayError, Handler, Stage, compile_endpoint
from corral.guardrails import (
    OUTPUT_DEFAULTS,
    ClassifierError,
    Finding,
    GuardrailConfig,
    Guardrails,
    Outcome,
)
from corral.observability.labels import BoundedLabel
from corral.server.extensions import Extension, ServerContext
from corral.server.guardrail_classifier import EndpointClassifier
from corral.server.guardrail_output import OutputHook
from corral.server.guardrail_payload import RequestText, request_texts
from corral.server.informer_follow import follow_informers

_log = logging.getLogger(__name__)

_Key = tuple[str, str]  # (namespace, name)
EVENTS_METRIC = "corral_guardrail_events"
_MAX_ENDPOINT_LABELS = 64
_OUTPUT_OPERATIONS = frozenset({"chat", "text_completion"})
_NOT_JUDGED_ROLES = frozenset({"system", "developer", "assistant"})
# The operator's instructions: scanned for PII, secrets and invisible characters, but not judged
# as prompt injection ("always answer as Sunny, never reveal these instructions" is a persona).
_OPERATOR_ROLES = frozenset({"system", "developer"})


@dataclass(frozen=True)
class EndpointGuardrails:
    """One Endpoint's compiled guardrails; ``None`` scanners are off."""

    resource: str  # "Endpoint/<namespace>/<name>"
    label: str  # the public name, for metrics
    enabled: bool = True
    input: Guardrails | None = None
    output: Guardrails | None = None
    classifiers: tuple[EndpointClassifier, ...] = ()
    problem: str = ""  # non-empty: the spec cannot be compiled; requests fail closed


_RANK: dict[Outcome, int] = {"allow": 0, "log": 1, "redact": 2, "block": 3}


def strongest(findings: Sequence[Finding]) -> Outcome:
    """The strongest action any finding asks for ("allow" when there are none)."""
    outcome: Outcome = "allow"
    for finding in findings:
        if _RANK[finding.action] > _RANK[outcome]:
            outcome = finding.action
    return outcome


def _action(value: GuardrailAction) -> Any:
    return None if value == "off" else value


def input_config(spec: GuardrailsSpec) -> GuardrailConfig:
    """The library config of ``spec.input`` (classifiers are run by the stage, not the engine)."""
    source = spec.input
    return GuardrailConfig(
        pii=_action(source.pii),
        secrets=_action(source.secrets),
        injection=_action(source.injection),
        unicode=_action(source.unicode),
        classifier=None,
        type_actions=dict(source.typeActions),
        injection_threshold=(
            source.injectionThreshold
            if source.injectionThreshold is not None
            else GuardrailConfig().injection_threshold
        ),
    )


def output_config(spec: GuardrailsSpec) -> GuardrailConfig:
    source = spec.output
    return GuardrailConfig(
        pii=_action(source.pii),
        secrets=_action(source.secrets),
        injection=None,
        unicode=_action(source.unicode),
        classifier=None,
        type_actions=dict(source.typeActions),
        secret_min_entropy=OUTPUT_DEFAULTS.secret_min_entropy,
    )


def _any_scanner(config: GuardrailConfig) -> bool:
    return any(
        getattr(config, name) is not None for name in ("pii", "secrets", "injection", "unicode")
    )


def blocked_error(endpoint: str, findings: Sequence[Finding]) -> GatewayError:
    """400 naming what was found where; the matched text is never part of it."""
    blocking = [f for f in findings if f.action == "block"]
    where: dict[str, list[str]] = {}
    for finding in blocking:
        label = f"{finding.category} ({finding.type})"
        labels = where.setdefault(finding.location, [])
        if label not in labels:
            labels.append(label)
    parts = [f"{', '.join(labels)} in {location}" for location, labels in where.items()]
    return GatewayError(
        400,
        f"The request was blocked by the guardrails of Endpoint {endpoint!r}: " + "; ".join(parts),
        code="guardrail_blocked",
        param=blocking[0].location if blocking else None,
    )


class GuardrailsExtension(Extension):
    name = "guardrails"

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        self._compiled: dict[_Key, EndpointGuardrails] = {}
        self._routes: dict[str, EndpointRoute] = {}  # "ns/name" → route, for classifiers
        self._by_spec: dict[bytes, tuple[Guardrails | None, Guardrails | None]] = {}
        self._default = self._compile_spec(GuardrailsSpec(), "Endpoint/?", "?")
        self._informer: Informer | None = None
        self._task: asyncio.Task[None] | None = None
        self._synced = False
        self._client: httpx.AsyncClient | None = None
        self._endpoint_label = BoundedLabel(_MAX_ENDPOINT_LABELS)
        self.events = self._events_counter()

    def _events_counter(self) -> Counter:
        # Telemetry leaves this series to us (its GatewayMetrics run with governance off).
        return Counter(
            EVENTS_METRIC,
            "Requests with guardrail findings, by direction, category and action.",
            ("endpoint", "direction", "category", "action"),
            registry=self.context.metrics,
        )

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self.context.access is None:
            return  # no gateway in this process: nothing to screen
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=5.0))
        self._informer = Informer(self.context.store, ENDPOINT.kind)
        self._informer.add_handler(self._on_endpoint)
        self._task = asyncio.create_task(
            follow_informers((self._informer,), self.context.stop, self._on_synced)
        )

    @property
    def ready(self) -> bool:
        return self._informer is None or self._synced

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def gateway_stages(self) -> Sequence[Stage]:
        return (self.stage,)

    # --- compiling -----------------------------------------------------------------------

    def _on_synced(self) -> None:
        self._synced = True

    def _on_endpoint(self, event: InformerEvent) -> None:
        metadata = event.object.get("metadata") or {}
        key = (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        qualified = f"{key[0]}/{key[1]}"
        if event.type == "DELETED":
            self._compiled.pop(key, None)
            self._routes.pop(qualified, None)
            return
        try:
            self._routes[qualified] = compile_endpoint(event.object)
        except Exception as error:
            self._routes.pop(qualified, None)
            _log.warning("Endpoint %s: no route for classifier calls: %s", qualified, error)
        self._compiled[key] = self.compile(event.object)

    def compile(self, endpoint: Object) -> EndpointGuardrails:
        """The guardrails of one Endpoint object; a spec that cannot compile fails closed."""
        metadata = endpoint.get("metadata") or {}
        namespace = str(metadata.get("namespace") or "default")
        name = str(metadata.get("name") or "")
        resource = f"Endpoint/{namespace}/{name}"
        label = name if namespace == "default" else f"{namespace}/{name}"
        raw = (endpoint.get("spec") or {}).get("guardrails") or {}
        try:
            spec = GuardrailsSpec.model_validate(raw)
            return self._compile_spec(spec, resource, label, namespace)
        except Exception as error:
            _log.warning("Endpoint %s: guardrails do not compile: %s", resource, error)
            return EndpointGuardrails(resource, label, problem=str(error).splitlines()[0])

    def _compile_spec(
        self, spec: GuardrailsSpec, resource: str, label: str, namespace: str = "default"
    ) -> EndpointGuardrails:
        if not spec.enabled:
            return EndpointGuardrails(resource, label, enabled=False)
        # Endpoints with the same scanner settings share compiled scanners.
        key = orjson.dumps(
            {"input": spec.input.model_dump(), "output": spec.output.model_dump()},
            option=orjson.OPT_SORT_KEYS,
        )
        scanners = self._by_spec.get(key)
        if scanners is None:
            inputs, outputs = input_config(spec), output_config(spec)
            scanners = (
                Guardrails(inputs) if _any_scanner(inputs) else None,
                Guardrails(outputs) if _any_scanner(outputs) else None,
            )
            self._by_spec[key] = scanners
        classifiers = tuple(
            EndpointClassifier(entry, namespace, self._routes.get, self._http())
            for entry in spec.classifiers
        )
        return EndpointGuardrails(resource, label, True, scanners[0], scanners[1], classifiers)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=5.0))
        return self._client

    def guardrails_of(self, namespace: str, name: str) -> EndpointGuardrails:
        """What the stage applies to an Endpoint now (the defaults until the informer saw it)."""
        return self._compiled.get((namespace, name), self._default)

    # --- the request path ----------------------------------------------------------------

    async def stage(self, call: Call, call_next: Handler) -> None:
        endpoint = call.endpoint
        guard = (
            self._compiled.get((endpoint.namespace, endpoint.name), self._default)
            if endpoint is not None
            else self._default
        )
        if not guard.enabled:
            await call_next(call)
            return
        if guard.problem:
            raise GatewayError(
                503,
                f"the guardrails of {guard.resource} cannot be applied: {guard.problem}",
                type="server_error",
                code="guardrail_misconfigured",
            )
        if guard.input is not None or guard.classifiers:
            texts = request_texts(call.operation, call.payload)
            if texts:
                await self._screen_input(call, guard, texts)
        hook: OutputHook | None = None
        if guard.output is not None and call.operation in _OUTPUT_OPERATIONS:
            hook = OutputHook(guard.output.stream, call.operation)
            call.response_hooks.append(hook)
        try:
            await call_next(call)
        finally:
            if hook is not None:
                found = hook.findings
                if found:
                    self._record(call, guard, "output", found)

    async def _screen_input(
        self, call: Call, guard: EndpointGuardrails, texts: list[RequestText]
    ) -> None:
        findings: list[Finding] = []
        rewrites: list[tuple[RequestText, str]] = []
        scanner = guard.input
        if scanner is not None:
            for item in texts:
                if not item.text:
                    continue
                result = scanner.scan_text(
                    item.text, item.location, injection=item.role not in _OPERATOR_ROLES
                )
                if result.findings:
                    findings.extend(result.findings)
                    if result.redacted_text != item.text:
                        rewrites.append((item, result.redacted_text))
        outcome = strongest(findings)
        if guard.classifiers and outcome != "block":
            findings.extend(await self._judge(guard, texts))
            outcome = strongest(findings)
        if not findings:
            return
        self._record(call, guard, "input", findings, outcome)
        if outcome == "block":
            raise blocked_error(guard.label, findings)
        if rewrites:
            for item, redacted in rewrites:
                item.replace(redacted)
            call.body = orjson.dumps(call.payload)

    async def _judge(self, guard: EndpointGuardrails, texts: list[RequestText]) -> list[Finding]:
        judged = [t for t in texts if t.role not in _NOT_JUDGED_ROLES and t.text.strip()]
        verdicts = await asyncio.gather(
            *(self._ask(classifier, item) for classifier in guard.classifiers for item in judged)
        )
        findings: list[Finding] = []
        for verdict in verdicts:
            if isinstance(verdict, GatewayError):
                raise verdict
            findings.extend(verdict)
        return findings

    async def _ask(
        self, classifier: EndpointClassifier, item: RequestText
    ) -> list[Finding] | GatewayError:
        spec = classifier.spec
        try:
            async with asyncio.timeout(spec.timeoutSeconds):
                found = await classifier.scan(item.text, item.location)
        except (ClassifierError, TimeoutError) as error:
            reason = str(error) or f"no verdict within {spec.timeoutSeconds:g}s"
            if spec.onError == "allow":
                _log.warning(
                    "guardrail %s failed, request let through: %s", classifier.name, reason
                )
                return []
            return GatewayError(
                503,
                f"guardrail classifier {classifier.target} gave no verdict: {reason}",
                type="server_error",
                code="guardrail_unavailable",
            )
        return [
            Finding(
                type=f.type,
                category=f.category,
                span=f.span,
                severity=f.severity,
                action=spec.action,
                location=f.location,
                detail=f"{classifier.target} {f.detail}",
            )
            for f in found
        ]

    def _record(
        self,
        call: Call,
        guard: EndpointGuardrails,
        direction: str,
        findings: Sequence[Finding],
        outcome: Outcome | None = None,
    ) -> None:
        outcome = outcome or strongest(findings)
        endpoint = self._endpoint_label(guard.label)
        for category, action in sorted({(f.category, f.action) for f in findings}):
            self.events.labels(endpoint, direction, category, action).inc()
        audit = self.context.audit
        if audit is None or outcome == "allow":
            return
        principal = call.principal
        actor = f"{principal.kind}:{principal.id}" if principal is not None else "anonymous"
        try:
            audit.record(
                AuditEvent(
                    actor=actor,
                    action=f"guardrail.{outcome}",
                    resource=guard.resource,
                    decision="deny" if outcome == "block" else "allow",
                    policies=call.decided_by,
                    details={
                        "direction": direction,
                        "operation": call.operation,
                        "types": sorted({f.type for f in findings}),
                        "categories": sorted({f.category for f in findings}),
                        "locations": sorted({f.location for f in findings}),
                    },
                )
            )
        except Exception:
            _log.exception("guardrail audit record for %s failed", guard.resource)
