"""The built-in kinds. Importing this package registers them all."""

from corral.api.kinds import (
    apikey,
    budget,
    deviceclass,
    devicequota,
    endpoint,
    lease,
    model,
    namespace,
    node,
    policy,
    ratelimit,
    resourceclaim,
    secret,
    team,
)

__all__ = [
    "apikey",
    "budget",
    "deviceclass",
    "devicequota",
    "endpoint",
    "lease",
    "model",
    "namespace",
    "node",
    "policy",
    "ratelimit",
    "resourceclaim",
    "secret",
    "team",
]
