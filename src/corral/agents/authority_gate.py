"""The policy tool gate: Cedar and the Agent's approval rules decide each tool call.

Where it sits: the runner asks its :class:`~corral.agents.seams.ToolGate` before every tool
call (after the model asked for it, before anything runs); :class:`PolicyToolGate` is the one
the server wires in. It asks ``corral.policy.tool_calls.decide_tool_call`` with the agent as
principal (``Agent::"spiffe://…/ns/<ns>/agent/<name>"``, its ``act`` the agents that delegated
to it, nearest first), the Tool entity (risk and labels) as resource, and the tool's name,
effective risk, arguments and the session's user in context. Then it folds in the Agent's
``approvals.require``:

- a tool named there (function, MCP tool or Tool name) always waits for a person: the agent's
  author asked for that, and a platform policy only ever waives the platform's default;
- a risk level named there (the default is ``write`` and ``destructive``) waits for a person
  unless a ``permit`` of ``call_without_approval`` applies;
- ``write``/``destructive`` wait regardless of the Agent's list unless such a permit applies,
  and a ``forbid`` of ``call_without_approval`` makes any call wait.

A deny comes back with the deciding statements in its reason; the runner journals it and hands
it to the model as the tool's error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from corral.agents.authority import AGENT_TOOL_PREFIX
from corral.agents.config import AgentConfig, ToolBinding
from corral.agents.seams import GateDecision, SessionInfo
from corral.identity import workload_id
from corral.policy import Entity, PolicyEngine, PolicySnapshot, principal_entity
from corral.policy.tool_calls import ToolCallDecision, decide_tool_call

ToolEntities = Callable[[str, str], Entity | None]
"""``(namespace, tool name) -> the Tool's policy entity`` (``corral.policy.object_entity`` of
the stored Tool), or None when it is not known here yet."""

DecisionHook = Callable[[SessionInfo, ToolBinding, ToolCallDecision], None]
"""Called with every Cedar decision (both answers, the deciding policies): the audit hook."""

TRUST_DOMAIN = "corral.local"


class PolicyToolGate:
    """A ``ToolGate`` over the policy engine's current snapshot (see the module docstring)."""

    def __init__(
        self,
        policies: PolicyEngine | Callable[[], PolicySnapshot],
        tools: ToolEntities | Mapping[tuple[str, str], Entity] | None = None,
        *,
        trust_domain: str = TRUST_DOMAIN,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_decision: DecisionHook | None = None,
    ) -> None:
        self._policies = policies
        self._tools = tools
        self.trust_domain = trust_domain
        self._now = now
        self._on_decision = on_decision
        self.last: ToolCallDecision | None = None
        """The latest decision in full (both Cedar answers), for audit and tests."""

    async def decide(
        self,
        session: SessionInfo,
        agent: AgentConfig,
        binding: ToolBinding,
        arguments: Mapping[str, Any],
    ) -> GateDecision:
        return self.check(session, agent, binding, arguments)

    def check(
        self,
        session: SessionInfo,
        agent: AgentConfig,
        binding: ToolBinding,
        arguments: Mapping[str, Any],
    ) -> GateDecision:
        """The decision, synchronously (Cedar is in-process; ``decide`` is the async seam)."""
        snapshot = (
            self._policies.snapshot
            if isinstance(self._policies, PolicyEngine)
            else self._policies()
        )
        verdict = decide_tool_call(
            snapshot,
            self.principal(session),
            self.tool_entity(session.namespace, binding),
            call_id=f"{session.id}/{binding.function}",
            tool=binding.name,
            risk=binding.risk,
            arguments=arguments,
            now=self._now(),
            user=session.user,
        )
        self.last = verdict
        if self._on_decision is not None:
            self._on_decision(session, binding, verdict)
        if verdict.effect == "deny":
            return GateDecision("deny", verdict.reason)
        require = agent.approvals.require
        named = sorted({binding.function, binding.name, binding.tool} & require)
        if named:
            reason = f"agent {agent.name} requires approval for {named[0]}"
            return GateDecision("approve", reason)
        if verdict.effect == "approve":
            return GateDecision("approve", verdict.reason)
        if binding.risk in require and verdict.approval != "waived":
            return GateDecision(
                "approve", f"agent {agent.name} requires approval of {binding.risk} tools"
            )
        return GateDecision("allow", verdict.reason)

    def principal(self, session: SessionInfo) -> Entity:
        """The session's agent as the decision's principal."""
        agent_id = workload_id(self.trust_domain, session.namespace, session.agent)
        return principal_entity(
            "workload",
            agent_id,
            namespace=session.namespace,
            act=tuple(self._actor_id(actor) for actor in reversed(session.actors)),
        )

    def tool_entity(self, namespace: str, binding: ToolBinding) -> Entity:
        """The Tool resource of a call; another agent called as a tool is
        ``Tool::"agent:<ns>/<name>"`` (no Tool object, so no labels)."""
        agent = binding.tool.startswith(AGENT_TOOL_PREFIX)
        ref = binding.tool.removeprefix(AGENT_TOOL_PREFIX)
        ns, slash, name = ref.partition("/")
        if not slash:
            ns, name = namespace, ref
        if agent:
            return Entity(
                "Tool",
                f"{AGENT_TOOL_PREFIX}{ns}/{name}",
                {"name": name, "namespace": ns, "risk": binding.risk},
                (("Namespace", ns),),
            )
        found: Entity | None
        if self._tools is None:
            found = None
        elif isinstance(self._tools, Mapping):
            found = self._tools.get((ns, name))
        else:
            found = self._tools(ns, name)
        if found is not None:
            return found
        # Not seen yet: no labels, so any policy that matches on labels fails closed.
        return Entity(
            "Tool",
            f"{ns}/{name}",
            {"name": name, "namespace": ns, "risk": binding.risk},
            (("Namespace", ns),),
        )

    def _actor_id(self, actor: str) -> str:
        if actor.startswith("spiffe://"):
            return actor
        ns, _, name = actor.partition("/")
        return workload_id(self.trust_domain, ns, name)
