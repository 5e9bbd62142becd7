"""``Endpoint``: the model name clients call, split by weight over Model versions.

``spec.guardrails`` says what the gateway screens on the way in and out (PII, secrets, prompt
injection, invisible Unicode, classifier Endpoints); it is on by default and compiled by the
gateway's guardrails extension (``corral.server.guardrails_extension``).

``spec.devices`` (optional) makes each replica claim a device of a DeviceClass, sized from the
Model (``corral.controllers.endpoint_devices``); without it replicas run where corral runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from corral.api.objects import ResourceStatus
from corral.api.registry import KindInfo, register_kind

RuntimeOption = str | int | float | bool


class ModelRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="name of a Model in the same namespace")
    weight: int = Field(default=100, ge=0, le=100, description="share of traffic, 0..100")


class RuntimeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["llamacpp", "vllm", "openai"] = "llamacpp"
    options: dict[str, RuntimeOption] = Field(
        default_factory=dict, description="server options passed to the runtime, e.g. chat_format"
    )
    baseURL: str | None = Field(default=None, description="upstream URL for type openai")
    secretRef: str | None = Field(default=None, description="Secret holding the upstream API key")


class TimeoutsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    perTrySeconds: float = Field(
        default=120.0, gt=0, le=3600, description="wait for one replica's first response byte"
    )
    totalSeconds: float = Field(
        default=300.0, gt=0, le=3600, description="wait for the response to start, all tries"
    )

    @model_validator(mode="after")
    def _ordered(self) -> TimeoutsSpec:
        if self.perTrySeconds > self.totalSeconds:
            raise ValueError("perTrySeconds must not exceed totalSeconds")
        return self


class RetryBudgetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ratio: float = Field(default=0.2, ge=0, le=1, description="retries per request allowed")
    minRetriesPerSecond: float = Field(
        default=3.0, ge=0, le=1000, description="retries allowed however few requests came"
    )
    windowSeconds: float = Field(default=10.0, ge=1, le=600, description="sliding window")


class OutlierDetectionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    consecutiveFailures: int = Field(
        default=5, ge=1, le=1000, description="failed tries in a row that eject a replica"
    )
    baseEjectionSeconds: float = Field(
        default=30.0, gt=0, le=3600, description="first ejection; each repeat adds as much"
    )
    maxEjectionPercent: int = Field(
        default=50, ge=0, le=50, description="most of a version's replicas ejected at once"
    )


class RoutingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: Literal["least-outstanding", "round-robin", "prefix-affinity"] = "least-outstanding"
    timeouts: TimeoutsSpec = Field(default_factory=TimeoutsSpec)
    retryBudget: RetryBudgetSpec = Field(default_factory=RetryBudgetSpec)
    outlierDetection: OutlierDetectionSpec = Field(default_factory=OutlierDetectionSpec)
    fallback: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="Endpoints ('name' in this namespace, or 'namespace/name') tried in order "
        "when this one has no ready replica or every try failed",
    )

    @model_validator(mode="after")
    def _fallback_names(self) -> RoutingSpec:
        for name in self.fallback:
            parts = name.split("/")
            if len(parts) > 2 or not all(parts):
                raise ValueError(f"fallback: {name!r} is not 'name' or 'namespace/name'")
        if len(set(self.fallback)) != len(self.fallback):
            raise ValueError("fallback: each Endpoint may appear once")
        return self


GuardrailAction = Literal["block", "redact", "log", "off"]
TypeAction = Literal["block", "redact", "log"]

GUARDRAIL_FINDING_TYPES: frozenset[str] = frozenset(
    {
        "email", "phone", "credit_card", "iban", "us_ssn", "national_id", "ip_address",
        "api_key", "aws_access_key_id", "aws_secret_access_key", "github_token", "slack_token",
        "slack_webhook", "google_api_key", "private_key", "jwt", "secret",
        "instruction_override", "jailbreak_persona", "jailbreak_template",
        "jailbreak_unrestricted", "system_prompt_exfiltration", "encoded_payload",
        "roleplay_cue", "policy_cue", "jailbreak_cue", "tag_characters", "bidi_control",
        "zero_width", "persona_template", "adversarial_suffix", "learned_cue",
    }
)  # fmt: skip
"""Finding types ``typeActions`` may name: the guardrail scanners' types (the API cannot import
the scanners, so a test keeps this list inside ``corral.guardrails.config.KNOWN_TYPES``)."""


def _check_type_actions(type_actions: Mapping[str, TypeAction]) -> dict[str, TypeAction]:
    unknown = sorted(set(type_actions) - GUARDRAIL_FINDING_TYPES)
    if unknown:
        raise ValueError(
            f"unknown finding type(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(GUARDRAIL_FINDING_TYPES))}"
        )
    return dict(type_actions)


class InputGuardrailsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pii: GuardrailAction = Field(default="redact", description="emails, phones, cards, IBANs...")
    secrets: GuardrailAction = Field(default="redact", description="API keys, private keys, JWTs")
    injection: GuardrailAction = Field(
        default="block", description="prompt-injection and jailbreak heuristics"
    )
    unicode: GuardrailAction = Field(default="redact", description="invisible and bidi characters")
    typeActions: dict[str, TypeAction] = Field(
        default_factory=dict, description="action per finding type, e.g. {ip_address: log}"
    )
    injectionThreshold: float | None = Field(
        default=None, gt=0, le=10, description="cue weight that makes an attack (default 1.0)"
    )

    _types = field_validator("typeActions")(_check_type_actions)


class OutputGuardrailsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pii: GuardrailAction = "redact"
    secrets: GuardrailAction = "redact"
    unicode: GuardrailAction = "redact"
    typeActions: dict[str, TypeAction] = Field(default_factory=dict)

    _types = field_validator("typeActions")(_check_type_actions)


class ClassifierGuardrailSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(
        min_length=1, description="the classifier Endpoint: 'name' (this namespace) or 'ns/name'"
    )
    action: Literal["block", "log"] = "block"
    on: Literal["input"] = Field(default="input", description="what it judges: the request")
    systemPrompt: str | None = Field(
        default=None, min_length=1, max_length=8000, description="the judge prompt"
    )
    flagged: list[str] = Field(
        default_factory=lambda: ["INJECTION", "JAILBREAK", "UNSAFE"], min_length=1
    )
    benign: list[str] = Field(default_factory=lambda: ["SAFE", "BENIGN"], min_length=1)
    maxTokens: int = Field(default=16, ge=1, le=512)
    timeoutSeconds: float = Field(default=10.0, gt=0, le=120)
    onError: Literal["block", "allow"] = Field(
        default="block", description="when the classifier fails: refuse (503) or let it pass"
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint_name(cls, endpoint: str) -> str:
        parts = endpoint.split("/")
        if len(parts) > 2 or not all(parts):
            raise ValueError(f"{endpoint!r} is not 'name' or 'namespace/name'")
        return endpoint

    @field_validator("flagged", "benign")
    @classmethod
    def _one_word_labels(cls, labels: list[str]) -> list[str]:
        for label in labels:
            if not label.replace("_", "").isalpha():
                raise ValueError(f"{label!r} is not a one-word label (letters and _)")
        return labels

    @model_validator(mode="after")
    def _distinct_labels(self) -> ClassifierGuardrailSpec:
        if {x.upper() for x in self.flagged} & {x.upper() for x in self.benign}:
            raise ValueError("flagged and benign labels must differ")
        return self


class GuardrailsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="false turns every scanner off")
    input: InputGuardrailsSpec = Field(default_factory=InputGuardrailsSpec)
    output: OutputGuardrailsSpec = Field(default_factory=OutputGuardrailsSpec)
    classifiers: list[ClassifierGuardrailSpec] = Field(default_factory=list, max_length=4)


class DevicesSpec(BaseModel):
    """What each replica claims from the device fleet (one ResourceClaim per replica)."""

    model_config = ConfigDict(extra="forbid")

    className: str = Field(
        min_length=1, max_length=253, description="DeviceClass the replica's device belongs to"
    )
    auto: bool = Field(
        default=True,
        description="ask for the memory the Model needs (weights + KV cache + overhead)",
    )
    memory: str | int | None = Field(
        default=None, description="memory per replica as a quantity (e.g. 24Gi); wins over auto"
    )
    cores: int | None = Field(
        default=None, ge=1, le=4096, description="CPU cores per replica (the runtime's threads)"
    )


class EndpointSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[ModelRef] = Field(min_length=1)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    replicas: int = Field(default=1, ge=0, le=64)
    routing: RoutingSpec = Field(default_factory=RoutingSpec)
    guardrails: GuardrailsSpec = Field(default_factory=GuardrailsSpec)
    devices: DevicesSpec | None = Field(
        default=None, description="claim devices per replica; none: run where corral runs"
    )

    @model_validator(mode="after")
    def _weights(self) -> EndpointSpec:
        names = [ref.model for ref in self.models]
        if len(set(names)) != len(names):
            raise ValueError("models: each Model may appear once")
        if sum(ref.weight for ref in self.models) == 0:
            raise ValueError("models: at least one weight must be above 0")
        if self.runtime.type == "openai" and not self.runtime.baseURL:
            raise ValueError("runtime.baseURL is required for runtime type openai")
        if self.devices is not None and self.runtime.type == "openai":
            raise ValueError("devices: an openai upstream runs elsewhere and claims no devices")
        return self


class EndpointStatus(ResourceStatus):
    replicas: list[dict[str, object]] = Field(default_factory=list)
    readyReplicas: int = 0


ENDPOINT = register_kind(
    KindInfo(
        kind="Endpoint",
        plural="endpoints",
        spec_model=EndpointSpec,
        status_model=EndpointStatus,
        short_names=("ep",),
        description="A public model name, split over Model versions, served by a runtime.",
        printer_columns=(("RUNTIME", "spec.runtime.type"), ("READY", "status.readyReplicas")),
    )
)
