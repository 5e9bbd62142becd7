"""The built-in kinds. Importing this package registers them all."""

from corral.api.kinds import (
    agent,
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
    tool,
)

__all__ = [
    "agent",
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
    "tool",
]
