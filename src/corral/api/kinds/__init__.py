"""The built-in kinds. Importing this package registers them all."""

from corral.api.kinds import (
    apikey,
    budget,
    endpoint,
    lease,
    model,
    namespace,
    policy,
    ratelimit,
    secret,
    team,
)

__all__ = [
    "apikey",
    "budget",
    "endpoint",
    "lease",
    "model",
    "namespace",
    "policy",
    "ratelimit",
    "secret",
    "team",
]
