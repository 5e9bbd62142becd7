"""The gateway's governance feed: who may call (API keys) and what they may invoke (policies).

Like the route feed, this runnable keeps its own informers (ApiKey, Team, Policy, Endpoint) and
compiles what they hold into snapshots the request path reads without touching the store: a
:class:`~corral.identity.KeyIndex` for authentication, a :class:`~corral.policy.PolicyEngine`
snapshot for decisions, and one Cedar resource entity per Endpoint (its labels are the tags
policies match on). Bursts coalesce into one rebuild per loop iteration, and only what changed
is rebuilt: a Policy event recompiles policies, an ApiKey or Team event rebuilds the key index.

Authentication answers the admin token first (a ``user`` principal in team ``admin``, matched by
the built-in Policy ``corral-system/admin-invokes-everything``), then workload JWTs (any bearer
credential shaped like a JWS, three dot-separated parts) against ``verifier``, the snapshot of
the platform's JWKS that the workload-identity extension keeps current, then API keys. A refused
JWT is a 401 saying which check failed; the verifier caches good tokens until they expire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from corral.api import Object
from corral.api.kinds.apikey import APIKEY
from corral.api.kinds.endpoint import ENDPOINT
from corral.api.kinds.policy import POLICY
from corral.api.kinds.team import TEAM
from corral.controlplane import Informer, InformerEvent
from corral.gateway.errors import unauthorized
from corral.identity import InvalidToken, KeyIndex, Principal, Verifier
from corral.identity.principal import workload_namespace
from corral.policy import Entity, PolicyEngine, object_entity, principal_entity
from corral.server.informer_follow import follow_informers
from corral.store.protocol import Store

_log = logging.getLogger(__name__)
_MAX_PRINCIPALS = 4096

ADMIN_PRINCIPAL = Principal(kind="user", id="admin", team="admin", namespace="corral-system")
"""Whoever presents the admin token: a member of ``Team::"corral-system/admin"`` to policies."""

_Key = tuple[str, str]  # (namespace, name)
_PrincipalKey = tuple[
    str, str, str | None, str | None, tuple[str, ...], tuple[tuple[str, str], ...]
]
_KEYS, _POLICIES = "keys", "policies"


class AccessFeed:
    """Keeps ``keys``, ``engine`` and the Endpoint entities equal to the store; run ``start``."""

    def __init__(self, store: Store, admin_check: Callable[[str | None], bool]) -> None:
        self.engine = PolicyEngine()
        self.keys = KeyIndex.build((), ())
        self.verifier: Verifier | None = None
        """Workload tokens are refused while None (no workload-identity extension)."""
        self._admin_check = admin_check
        self._informers = {
            kind: Informer(store, kind)
            for kind in (APIKEY.kind, TEAM.kind, POLICY.kind, ENDPOINT.kind)
        }
        self._endpoints: dict[_Key, Entity] = {}
        self._principals: dict[_PrincipalKey, Entity] = {}
        self._dirty: set[str] = set()
        self._rebuild_scheduled = False
        self._synced = False
        self.rebuilds = 0
        for kind, informer in self._informers.items():
            informer.add_handler(self._handler_for(kind))

    @property
    def ready(self) -> bool:
        """Every cache loaded and the first snapshots built from them."""
        return self._synced and self.rebuilds > 0

    def authenticate(self, token: str | None) -> Principal | None:
        """The caller a bearer token names: the admin, a workload, an API key's team key, or
        nobody. A JWT that fails verification raises a 401 ``GatewayError`` saying why."""
        if token is None:
            return None
        if self._admin_check(token):
            return ADMIN_PRINCIPAL
        if token.count(".") == 2:
            verifier = self.verifier
            if verifier is None:
                raise unauthorized("workload tokens are not accepted by this gateway")
            try:
                return verifier.verify(token).principal
            except InvalidToken as error:
                reason = error.message.removeprefix("invalid token: ")
                raise unauthorized(f"invalid workload token ({error.problem}): {reason}") from None
        return self.keys.authenticate(token)

    def principal_entity(self, principal: Principal) -> Entity:
        """The caller as a policy principal, built once per key snapshot, not per request."""
        # Everything the entity is built from: two workload tokens of one subject may carry
        # different delegation chains or labels, and policies (and their decision cache) see
        # the entity, so they must not share one.
        labels = principal.labels
        key = (
            principal.kind,
            principal.id,
            principal.team,
            principal.namespace,
            principal.act,
            tuple(sorted(labels.items())) if labels else (),
        )
        entity = self._principals.get(key)
        if entity is None:
            if len(self._principals) >= _MAX_PRINCIPALS:
                self._principals.clear()  # token users are unbounded; keys and admin are few
            entity = self._principals[key] = _policy_principal(principal)
        return entity

    def endpoint_entity(self, namespace: str, name: str) -> Entity:
        """The Endpoint as a policy resource; one not seen yet has no labels (fails closed on
        any policy that matches labels)."""
        entity = self._endpoints.get((namespace, name))
        if entity is None:
            entity = Entity(
                "Endpoint",
                f"{namespace}/{name}",
                {"name": name, "namespace": namespace},
                (("Namespace", namespace),),
            )
        return entity

    async def start(self, stop: asyncio.Event) -> None:
        """Follow the store until ``stop`` is set."""
        await follow_informers(tuple(self._informers.values()), stop, self._on_synced)

    def _on_synced(self) -> None:
        # A key index built before its Teams arrived would refuse valid keys.
        self._synced = True
        self._dirty.update((_KEYS, _POLICIES))
        self._schedule_rebuild()

    def _handler_for(self, kind: str) -> Callable[[InformerEvent], None]:
        if kind == ENDPOINT.kind:
            return self._on_endpoint
        part = _POLICIES if kind == POLICY.kind else _KEYS

        def on_event(_event: InformerEvent) -> None:
            self._dirty.add(part)
            self._schedule_rebuild()

        return on_event

    def _on_endpoint(self, event: InformerEvent) -> None:
        metadata = event.object.get("metadata") or {}
        key = (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        if event.type == "DELETED":
            self._endpoints.pop(key, None)
            return
        try:
            self._endpoints[key] = object_entity(event.object)
        except ValueError as error:
            _log.warning("Endpoint %s/%s has no policy resource: %s", key[0], key[1], error)

    def _schedule_rebuild(self) -> None:
        if self._rebuild_scheduled or not self._synced:
            return
        self._rebuild_scheduled = True
        asyncio.get_running_loop().call_soon(self._rebuild)

    def _rebuild(self) -> None:
        self._rebuild_scheduled = False
        dirty, self._dirty = self._dirty, set()
        if _KEYS in dirty:
            self._rebuild_keys()
        if _POLICIES in dirty:
            self._rebuild_policies()
        self.rebuilds += 1

    def _rebuild_keys(self) -> None:
        try:
            keys = KeyIndex.build(
                self._informers[APIKEY.kind].list(), self._informers[TEAM.kind].list()
            )
        except Exception as error:
            # Keep the last good index rather than refuse every key over one bad object.
            _log.warning("API keys not reloaded, the previous keys stay in force: %s", error)
            return
        for problem in keys.problems:
            _log.warning("API key refused: %s", problem)
        self.keys = keys
        self._principals.clear()  # Team labels may have changed with the keys

    def _rebuild_policies(self) -> None:
        policies: list[Object] = self._informers[POLICY.kind].list()
        try:
            snapshot = self.engine.update(policies=policies)
        except Exception as error:
            _log.warning("Policies not reloaded, the previous ones stay in force: %s", error)
            return
        for policy, problems in snapshot.problems.items():
            _log.warning("Policy %s fails closed: %s", policy, "; ".join(problems))


def _policy_principal(principal: Principal) -> Entity:
    """The caller as Cedar sees it. An agent acting for a user (RFC 8693: ``sub`` the user,
    ``act.sub`` the agent) is the agent, ``Agent::"spiffe://…/agent/<name>"``, with the user in
    its ``user`` attribute and the agents that delegated to it in ``act``: policies decide what
    an agent may do, whoever it works for (``principal has user`` when that matters)."""
    acting = principal.act[0] if principal.act else None
    namespace = workload_namespace(acting) if acting is not None else None
    if principal.kind != "user" or acting is None or namespace is None:
        return principal_entity(
            principal.kind,
            principal.id,
            team=principal.team,
            namespace=principal.namespace,
            labels=principal.labels,
            act=principal.act,
        )
    agent = principal_entity(
        "workload",
        acting,
        namespace=namespace,
        labels=principal.labels,
        act=principal.act[1:],
    )
    return replace(agent, attrs={**agent.attrs, "user": principal.id})
