"""Cedar authorization: who may invoke an Endpoint, call a Tool, apply or delete a resource.

Policy objects (``corral.api.kinds.policy``) are validated against ``CEDAR_SCHEMA`` when they
are applied; ``PolicyEngine`` compiles the enabled ones into an immutable snapshot that the
gateway and the API server ask per request (deny by default); ``evaluate_request`` answers the
same question offline for ``corral policy test``. Sits on ``corral.api`` only.
"""

from corral.api.kinds.policy import CEDAR_SCHEMA, cedar_problems
from corral.policy.compiler import CompiledPolicies, PolicyRef, compile_policies
from corral.policy.engine import Decision, PolicyEngine, PolicySnapshot, build_snapshot, decide
from corral.policy.entities import (
    Entity,
    EntityUid,
    call_context,
    clock,
    invoke_context,
    object_entity,
    principal_entity,
    team_entity,
)
from corral.policy.offline import ACTIONS, evaluate_request

__all__ = [
    "ACTIONS",
    "CEDAR_SCHEMA",
    "CompiledPolicies",
    "Decision",
    "Entity",
    "EntityUid",
    "PolicyEngine",
    "PolicyRef",
    "PolicySnapshot",
    "build_snapshot",
    "call_context",
    "cedar_problems",
    "clock",
    "compile_policies",
    "decide",
    "evaluate_request",
    "invoke_context",
    "object_entity",
    "principal_entity",
    "team_entity",
]
