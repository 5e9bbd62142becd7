"""The gateway's policy stage, and the built-in Policy that keeps the admin token working.

``policy_stage`` runs after the Endpoint is resolved and before the request is forwarded: one
Cedar decision per request (deny by default) against the access feed's current snapshot. The
principal is the caller authentication named, the action ``invoke``, the resource the Endpoint
with its labels, and the context the ``model`` asked for, the estimated tokens (the request's
``max_completion_tokens``/``max_tokens`` plus a prompt estimate), the time and the client's IP.
A deny is a 403 that names nothing of the deployment beyond the deciding ``forbid`` Policies.
The principal and Endpoint entities come from the access feed's per-snapshot caches, so a
repeated request is the same question about the same objects and the policy snapshot answers it
from its decision cache (``corral.policy.decision_cache``) without asking Cedar; context values
no policy reads (typically ``estimated_tokens``) do not split that cache.

``ensure_builtin_policies`` creates ``corral-system/admin-invokes-everything`` at start when it
is absent (an operator may edit or disable it afterwards; a later start leaves it alone).
"""

from __future__ import annotations

import functools
import ipaddress
from datetime import UTC, datetime

from corral.api.errors import AlreadyExists
from corral.api.objects import API_VERSION, Object
from corral.gateway import Call, GatewayError, Handler, Stage
from corral.metering.estimate import estimate_prompt_tokens
from corral.policy import invoke_context
from corral.server.access_feed import AccessFeed
from corral.store.protocol import Store

ADMIN_POLICY_NAMESPACE = "corral-system"
ADMIN_POLICY_NAME = "admin-invokes-everything"
_SYSTEM_ACTOR = "system:server"


def admin_policy() -> Object:
    """The built-in Policy: the admin token's principal may invoke every Endpoint."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Policy",
        "metadata": {
            "name": ADMIN_POLICY_NAME,
            "namespace": ADMIN_POLICY_NAMESPACE,
            "labels": {"corral.dev/builtin": "true"},
        },
        "spec": {
            "description": (
                "Built in: the admin token (team corral-system/admin) may invoke every Endpoint. "
                "Set enabled: false to require explicit policies for the admin too."
            ),
            "cedar": (
                '@id("admin-invokes-everything")\n'
                "permit (\n"
                '  principal in Team::"corral-system/admin",\n'
                '  action == Action::"invoke",\n'
                "  resource is Endpoint\n"
                ");\n"
            ),
        },
    }


async def ensure_builtin_policies(store: Store) -> None:
    """Create the built-in Policy when absent (idempotent; an edited one is kept as it is)."""
    try:
        await store.create(admin_policy(), actor=_SYSTEM_ACTOR)
    except AlreadyExists:
        return


def policy_stage(access: AccessFeed) -> Stage:
    """Refuse with 403 unless the current policies permit the caller to invoke the Endpoint."""

    async def authorize_stage(call: Call, call_next: Handler) -> None:
        principal, endpoint = call.principal, call.endpoint
        if principal is None or endpoint is None:
            # Authentication that names no principal cannot be authorized: fail closed.
            raise _denied(())
        payload = call.payload
        client = call.scope.get("client")
        context = invoke_context(
            model=str(payload.get("model", "")),
            estimated_tokens=_estimated_tokens(payload),
            now=datetime.now(UTC),
            client_ip=_client_ip(client),
            stream=call.stream,
        )
        subject = access.principal_entity(principal)
        resource = access.endpoint_entity(endpoint.namespace, endpoint.name)
        decision = access.engine.decide(subject, "invoke", resource, context)
        call.decided_by = decision.policies
        if not decision.allowed:
            raise _denied(decision.policies)
        await call_next(call)

    return authorize_stage


def _estimated_tokens(payload: dict[str, object]) -> int:
    requested = payload.get("max_completion_tokens", payload.get("max_tokens"))
    output = requested if isinstance(requested, int) and requested > 0 else 0
    return output + estimate_prompt_tokens(payload)


def _client_ip(client: object) -> str | None:
    # Unix sockets and test transports give no address; Cedar would refuse a non-IP string.
    if not isinstance(client, (tuple, list)) or not client:
        return None
    host = client[0]
    return _normalized_ip(host) if isinstance(host, str) else None


@functools.lru_cache(maxsize=4096)
def _normalized_ip(host: str) -> str | None:
    # Clients come back from a few addresses: parsing each once saves ~2 us per request.
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _denied(forbids: tuple[str, ...]) -> GatewayError:
    message = "denied by policy"
    if forbids:
        message += f" (forbidden by {', '.join(forbids)})"
    return GatewayError(403, message, type="permission_denied", code="denied_by_policy")
