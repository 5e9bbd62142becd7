"""``Team``: who an API key speaks for; its labels are what policies match on.

A Team is namespaced: its ApiKeys live in the same namespace, and the gateway's key index
(``corral.identity.KeyIndex``) turns each key into a principal carrying the team's labels.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from corral.api.objects import label_key_problem, label_value_problem
from corral.api.registry import KindInfo, register_kind


class TeamSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    displayName: str = Field(default="", max_length=200, description="a name for people")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="attributes policies match on, e.g. tier: gold (Kubernetes label syntax)",
    )

    @field_validator("labels")
    @classmethod
    def _label_syntax(cls, labels: dict[str, str]) -> dict[str, str]:
        problems = [
            problem
            for key, value in labels.items()
            for problem in (label_key_problem(key), label_value_problem(value))
            if problem is not None
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return labels


TEAM = register_kind(
    KindInfo(
        kind="Team",
        plural="teams",
        spec_model=TeamSpec,
        description="A group of callers; API keys authenticate as their team.",
        printer_columns=(("DISPLAY NAME", "spec.displayName"),),
    )
)
