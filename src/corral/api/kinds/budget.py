"""``Budget``: a token and/or USD limit on what a team, key, model or agent may spend per period.

The gateway (and the agent runtime) reserve a request's worst-case cost against every Budget
that applies before the upstream call and settle the real cost after (``corral.metering``), so
a hard budget is never overspent, also across many gateway processes. A soft budget is counted
the same way but only raises alerts.

Periods are calendar windows in UTC: a day starts at 00:00 UTC, a week on Monday 00:00 UTC
(ISO weeks), a month on the 1st at 00:00 UTC; ``total`` never resets.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from corral.api.objects import DNS1123_SUBDOMAIN
from corral.api.registry import KindInfo, register_kind


class BudgetScope(BaseModel):
    """Whose requests count: one Team, ApiKey, Model (endpoint model name) or Agent."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["team", "apikey", "model", "agent"]
    name: str = Field(min_length=1, max_length=253, description="the team, key, model or agent")

    @field_validator("name")
    @classmethod
    def _resource_name(cls, value: str) -> str:
        if not DNS1123_SUBDOMAIN.match(value):
            raise ValueError(f"{value!r} is not a valid resource name (DNS-1123)")
        return value


class BudgetLimits(BaseModel):
    """At least one of the two; with both, whichever is reached first applies."""

    model_config = ConfigDict(extra="forbid")

    tokens: int | None = Field(default=None, ge=1, description="input + output tokens per period")
    usd: float | None = Field(default=None, gt=0, description="USD per period (Model pricing)")

    @model_validator(mode="after")
    def _at_least_one(self) -> BudgetLimits:
        if self.tokens is None and self.usd is None:
            raise ValueError("set tokens, usd or both")
        return self


class BudgetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: BudgetScope
    limits: BudgetLimits
    period: Literal["day", "week", "month", "total"] = Field(
        default="month", description="UTC calendar window the limits apply to"
    )
    mode: Literal["hard", "soft"] = Field(
        default="hard", description="hard refuses requests over the limit; soft only alerts"
    )


BUDGET = register_kind(
    KindInfo(
        kind="Budget",
        plural="budgets",
        spec_model=BudgetSpec,
        short_names=("bdg",),
        description="A token/USD spending limit per period for a team, key, model or agent.",
        printer_columns=(
            ("SCOPE", "spec.scope.kind"),
            ("FOR", "spec.scope.name"),
            ("PERIOD", "spec.period"),
            ("MODE", "spec.mode"),
        ),
    )
)
