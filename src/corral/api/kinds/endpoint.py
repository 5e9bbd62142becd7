"""``Endpoint``: the model name clients call, split by weight over Model versions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class EndpointSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[ModelRef] = Field(min_length=1)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    replicas: int = Field(default=1, ge=0, le=64)
    routing: RoutingSpec = Field(default_factory=RoutingSpec)

    @model_validator(mode="after")
    def _weights(self) -> EndpointSpec:
        names = [ref.model for ref in self.models]
        if len(set(names)) != len(names):
            raise ValueError("models: each Model may appear once")
        if sum(ref.weight for ref in self.models) == 0:
            raise ValueError("models: at least one weight must be above 0")
        if self.runtime.type == "openai" and not self.runtime.baseURL:
            raise ValueError("runtime.baseURL is required for runtime type openai")
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
