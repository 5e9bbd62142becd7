"""Session credentials: the workload JWTs a session presents on its model and tool calls.

Where it sits: the runner asks the :class:`~corral.agents.seams.TokenSource` for a token right
before each activity; :class:`SessionCredentials` is that source. Every Agent is the workload
``spiffe://<trust-domain>/ns/<ns>/agent/<name>``; a session's tokens are minted by the
platform's :class:`~corral.identity.TokenIssuer` with one audience each:

- model calls: the gateway's audience (``corral-gateway``, what its verifier expects);
- tool calls: the Tool's own id, ``spiffe://<trust-domain>/ns/<ns>/tool/<name>``;
- calls to another agent (A2A): that agent's id.

Delegation follows RFC 8693. The parties of a session, in the order the work was handed down,
are the user (if any), the agents that delegated to this one (outermost first) and this agent.
The token's ``sub`` is the first of them and ``act`` nests the others, the current actor
outermost: a session of agent B, started by agent A for user alice, presents
``{"sub": "alice", "act": {"sub": B, "act": {"sub": A}}}``, which the gateway verifier reads
as the principal alice with ``act = (B, A)``.

Tokens are cached per session and audience and re-minted once less than ``refresh_before``
seconds of their lifetime are left, so a long session never presents an expired token and a
busy one does not sign on every call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from corral.agents.config import AgentConfig
from corral.agents.seams import SessionInfo
from corral.identity import TokenIssuer, workload_id
from corral.identity.principal import Principal, workload_namespace

GATEWAY_AUDIENCE = "corral-gateway"
"""The audience the gateway's verifier accepts (``corral.server.workload_identity``)."""
TRUST_DOMAIN = "corral.local"
DEFAULT_TTL = 300.0
DEFAULT_REFRESH_BEFORE = 60.0
MAX_CACHED_TOKENS = 100_000
AGENT_TOOL_PREFIX = "agent:"
"""A tool reference naming another agent, called over A2A instead of MCP."""
SESSION_CLAIM = "sid"
"""The session id rides in every token, so tools and the audit log can name the session."""


@dataclass(frozen=True, slots=True)
class _Cached:
    token: str
    refresh_at: float


class SessionCredentials:
    """Mints and caches the per-session workload tokens (a ``TokenSource``).

    ``issuer`` is the platform's token issuer, or a function returning the current one (the
    workload-identity extension rebuilds its issuer when the signing keys rotate).
    """

    def __init__(
        self,
        issuer: TokenIssuer | Callable[[], TokenIssuer],
        *,
        trust_domain: str = TRUST_DOMAIN,
        gateway_audience: str = GATEWAY_AUDIENCE,
        ttl: float = DEFAULT_TTL,
        refresh_before: float = DEFAULT_REFRESH_BEFORE,
        clock: Callable[[], float] = time.time,
        max_cached: int = MAX_CACHED_TOKENS,
    ) -> None:
        if not ttl > 0 or not 0 <= refresh_before < ttl:
            raise ValueError(
                f"ttl must be > 0 and refresh_before in [0, ttl) (got {ttl:g}, {refresh_before:g})"
            )
        if not gateway_audience:
            raise ValueError("gateway_audience must not be empty")
        workload_id(trust_domain, "default", "probe")  # the trust domain must be a DNS name
        self._issuer = issuer
        self.trust_domain = trust_domain
        self.gateway_audience = gateway_audience
        self.ttl = ttl
        self.refresh_before = refresh_before
        self._clock = clock
        self._max_cached = max_cached
        self._cache: dict[tuple[str, str], _Cached] = {}

    # -- TokenSource --------------------------------------------------------------------------

    def model_token(self, session: SessionInfo, agent: AgentConfig) -> str:
        """The token for the session's model calls (audience: the gateway)."""
        return self._token(session, agent, self.gateway_audience)

    def tool_token(self, session: SessionInfo, agent: AgentConfig, tool: str) -> str:
        """The token for calls of ``tool`` (a Tool name in the agent's namespace, or
        ``namespace/name``); its audience is the Tool's workload id. A tool that is another
        agent (``agent:<name>`` or ``agent:<ns>/<name>``, see ``corral.agents.a2a_tools``)
        gets that agent's id as audience."""
        if tool.startswith(AGENT_TOOL_PREFIX):
            return self.agent_token(session, agent, tool.removeprefix(AGENT_TOOL_PREFIX))
        return self._token(session, agent, self.tool_audience(agent.namespace, tool))

    def agent_token(self, session: SessionInfo, agent: AgentConfig, target: str) -> str:
        """The token for calling another agent over A2A (``name`` or ``namespace/name``)."""
        return self._token(session, agent, self.agent_audience(agent.namespace, target))

    # -- ids ----------------------------------------------------------------------------------

    def agent_id(self, namespace: str, name: str) -> str:
        return workload_id(self.trust_domain, namespace, name, type="agent")

    def tool_audience(self, namespace: str, tool: str) -> str:
        ns, name = _qualified(namespace, tool)
        return workload_id(self.trust_domain, ns, name, type="tool")

    def agent_audience(self, namespace: str, target: str) -> str:
        ns, name = _qualified(namespace, target)
        return self.agent_id(ns, name)

    def chain(self, session: SessionInfo) -> tuple[str, ...]:
        """The session's parties in the order the work was handed down (see the module doc)."""
        actors = tuple(self._actor_id(actor) for actor in session.actors)
        own = self.agent_id(session.namespace, session.agent)
        return ((session.user,) if session.user else ()) + actors + (own,)

    def forget(self, session_id: str) -> None:
        """Drop a finished session's cached tokens (they also age out on their own)."""
        for key in [key for key in self._cache if key[0] == session_id]:
            del self._cache[key]

    # -- minting ------------------------------------------------------------------------------

    def _token(self, session: SessionInfo, agent: AgentConfig, audience: str) -> str:
        if (agent.namespace, agent.name) != (session.namespace, session.agent):
            raise ValueError(
                f"session {session.id} belongs to agent {session.namespace}/{session.agent}, "
                f"not {agent.namespace}/{agent.name}"
            )
        now = self._clock()
        key = (session.id, audience)
        cached = self._cache.get(key)
        if cached is not None and now < cached.refresh_at:
            return cached.token
        parties = self.chain(session)
        issuer = self._issuer if isinstance(self._issuer, TokenIssuer) else self._issuer()
        token = issuer.mint(
            parties[0],
            audience,
            self.ttl,
            act=tuple(reversed(parties[1:])),
            extra={SESSION_CLAIM: session.id},
        )
        if len(self._cache) >= self._max_cached:
            self._evict(now)
        self._cache[key] = _Cached(token, now + self.ttl - self.refresh_before)
        return token

    def _evict(self, now: float) -> None:
        stale = [key for key, cached in self._cache.items() if cached.refresh_at <= now]
        for key in stale or list(self._cache)[: self._max_cached // 10 + 1]:
            del self._cache[key]

    def _actor_id(self, actor: str) -> str:
        if actor.startswith("spiffe://"):
            if workload_namespace(actor) is None:
                raise ValueError(f"actor {actor!r} is not a workload id")
            return actor
        namespace, slash, name = actor.partition("/")
        if not slash:
            raise ValueError(f"actor {actor!r}: expected 'namespace/name' or a SPIFFE id")
        return self.agent_id(namespace, name)


@dataclass(frozen=True, slots=True)
class Delegation:
    """Who a session started by a token works for: the user (if any) and the agents that
    delegated the work, outermost first (``SessionInfo.user`` / ``SessionInfo.actors``)."""

    user: str | None
    actors: tuple[str, ...]


def delegation_of(principal: Principal) -> Delegation:
    """The delegation a verified caller hands down to the session it starts.

    The token's parties are its subject, then its ``act`` chain from the innermost (earliest)
    actor to the current one. Users stay users; workloads (the calling agents) become actors,
    so the new session's tokens carry the whole chain, nested one level deeper.
    """
    parties: Sequence[str] = (principal.id, *reversed(principal.act))
    user = None if workload_namespace(parties[0]) is not None else parties[0]
    actors = tuple(party for party in parties[1 if user else 0 :])
    for actor in actors:
        if workload_namespace(actor) is None:
            raise ValueError(f"delegation chain: actor {actor!r} is not a workload id")
    return Delegation(user, actors)


def _qualified(namespace: str, ref: str) -> tuple[str, str]:
    ns, slash, name = ref.partition("/")
    return (ns, name) if slash else (namespace, ref)
