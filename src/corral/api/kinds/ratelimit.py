"""``RateLimit``: how fast a team, key, model or agent may call: requests and tokens per minute,
and requests in flight at once.

The gateway admits a request only when every RateLimit that applies has room for it, and
refuses it otherwise with a 429 and ``Retry-After`` (``corral.server.ratelimit_extension``).
Counters are shared by every gateway process of a deployment, so the limits hold for the
deployment as a whole, not per process. Scopes match as Budgets' do, each in
its own namespace: ``team`` the caller's team in the caller's namespace, ``apikey`` the ApiKey
that authenticated the call, ``agent`` a workload ``spiffe://…/ns/<ns>/agent/<name>``, and
``model`` the Endpoint called (the ``model`` clients send) in the Endpoint's namespace.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from corral.api.kinds.budget import BudgetScope
from corral.api.registry import KindInfo, register_kind


class RateLimitScope(BudgetScope):
    """Whose requests count: one Team, ApiKey, Model (Endpoint name) or Agent."""


class RateLimitSpec(BaseModel):
    """At least one limit; a request must fit under every limit that is set."""

    model_config = ConfigDict(extra="forbid")

    scope: RateLimitScope
    requestsPerMinute: int | None = Field(
        default=None, ge=1, description="requests admitted per minute (sliding window)"
    )
    tokensPerMinute: int | None = Field(
        default=None,
        ge=1,
        description="input + output tokens per minute (sliding window); a request is charged "
        "its estimate (prompt + max_tokens) when admitted and corrected to its real usage after",
    )
    concurrentRequests: int | None = Field(
        default=None, ge=1, description="requests in flight at once"
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> RateLimitSpec:
        if (
            self.requestsPerMinute is None
            and self.tokensPerMinute is None
            and self.concurrentRequests is None
        ):
            raise ValueError("set requestsPerMinute, tokensPerMinute or concurrentRequests")
        return self


RATELIMIT = register_kind(
    KindInfo(
        kind="RateLimit",
        plural="ratelimits",
        spec_model=RateLimitSpec,
        short_names=("rl",),
        description="Requests per minute, tokens per minute and concurrent requests for a "
        "team, key, model or agent.",
        printer_columns=(
            ("SCOPE", "spec.scope.kind"),
            ("FOR", "spec.scope.name"),
            ("RPM", "spec.requestsPerMinute"),
            ("TPM", "spec.tokensPerMinute"),
            ("CONCURRENT", "spec.concurrentRequests"),
        ),
    )
)
