"""``Model``: one versioned model artifact (weights file, digest, metadata, pricing)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from corral.api.objects import ResourceStatus
from corral.api.registry import KindInfo, register_kind

_SOURCE = re.compile(r"^(file|pkg|hf)://.+")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class Pricing(BaseModel):
    """Price per million tokens, used by metering and budgets."""

    model_config = ConfigDict(extra="forbid")

    inputPerMillion: float = Field(default=0.0, ge=0)
    outputPerMillion: float = Field(default=0.0, ge=0)
    currency: Literal["USD"] = "USD"


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        description="file:///abs/path, pkg://python_package/path or hf://org/repo/file"
    )
    format: Literal["gguf", "safetensors"] = "gguf"
    digest: str | None = Field(default=None, description="sha256:<64 hex>; verified before serving")
    signature: str | None = None
    license: str | None = None
    contextLength: int | None = Field(default=None, ge=1)
    pricing: Pricing | None = None

    @field_validator("source")
    @classmethod
    def _source_scheme(cls, value: str) -> str:
        if not _SOURCE.match(value):
            raise ValueError("must start with file://, pkg:// or hf://")
        return value

    @field_validator("digest")
    @classmethod
    def _digest_format(cls, value: str | None) -> str | None:
        if value is not None and not _DIGEST.match(value):
            raise ValueError("must be 'sha256:' followed by 64 lower-case hex digits")
        return value


class ModelStatus(ResourceStatus):
    path: str = ""
    sizeBytes: int = 0
    digest: str = ""
    metadata: dict[str, object] = Field(default_factory=dict)


MODEL = register_kind(
    KindInfo(
        kind="Model",
        plural="models",
        spec_model=ModelSpec,
        status_model=ModelStatus,
        short_names=("mdl",),
        description="A versioned model artifact.",
        printer_columns=(("SOURCE", "spec.source"), ("SIZE", "status.sizeBytes")),
    )
)
