"""``Secret``: credentials the platform injects (upstream API keys, tool tokens).

Values are written in plain text in ``spec.data`` and encrypted by the store before they reach
disk (see ``corral.store.encryption``); they are never passed to a model or an agent.
"""

from pydantic import BaseModel, ConfigDict, Field

from corral.api.registry import KindInfo, register_kind


class SecretSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(default="Opaque", description="a hint for readers, e.g. 'api-key'")
    data: dict[str, str] = Field(default_factory=dict, description="key → value, plain text")


SECRET = register_kind(
    KindInfo(
        kind="Secret",
        plural="secrets",
        spec_model=SecretSpec,
        description="Credentials injected by the platform; encrypted at rest.",
        printer_columns=(("TYPE", "spec.type"),),
    )
)
