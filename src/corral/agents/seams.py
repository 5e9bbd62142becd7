"""The runtime's side effects go through these seams, so tests swap the network for a function.

- :class:`ModelCaller`: one chat-completions call through the gateway core (policy, budgets,
  guardrails, metering and audit apply there with the agent as principal). It returns the
  response dict, or an async iterator of chunk dicts (OpenAI streaming shape) that the runtime
  forwards as ``model_delta`` stream events and folds into one message.
- :class:`ToolCaller`: one call of an MCP tool on a Tool resource. ``idempotency_key`` is
  ``f"{session_id}:{step}"``: the same for the retry of a call that was in flight at a crash,
  so the tool can de-duplicate. It returns an MCP-shaped dict ``{"content": [...],
  "isError": bool}`` (or ``structuredContent``) or a string; anything else is a malformed
  result, journaled as a tool error.
- :class:`TokenSource`: the workload JWT for a session's model call (audience: the gateway) or
  tool call (audience: the tool), with the ``act`` chain when the session acts for a user.
- :class:`ToolGate`: the policy decision for one tool call (allow, deny, or ask a person).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from corral.agents.config import AgentConfig, ToolBinding

ModelResponse = Mapping[str, Any] | AsyncIterator[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Who a session is: what tokens and policy decisions are made about."""

    id: str
    namespace: str
    agent: str
    user: str | None = None
    actors: tuple[str, ...] = ()
    """Agents that delegated to this one (outermost first), for nested ``act`` claims."""


class ModelCaller(Protocol):
    async def __call__(self, request: dict[str, Any], token: str) -> ModelResponse: ...


class ToolCaller(Protocol):
    async def call(
        self,
        tool: str,
        name: str,
        arguments: dict[str, Any],
        idempotency_key: str,
        token: str,
    ) -> Any: ...


class TokenSource(Protocol):
    def model_token(self, session: SessionInfo, agent: AgentConfig) -> str: ...

    def tool_token(self, session: SessionInfo, agent: AgentConfig, tool: str) -> str: ...


class NoTokens:
    """Empty tokens: for embedding without identity (tests, benchmarks)."""

    def model_token(self, session: SessionInfo, agent: AgentConfig) -> str:  # noqa: ARG002
        return ""

    def tool_token(self, session: SessionInfo, agent: AgentConfig, tool: str) -> str:  # noqa: ARG002
        return ""


@dataclass(frozen=True, slots=True)
class GateDecision:
    effect: Literal["allow", "deny", "approve"]
    reason: str = ""


ALLOW = GateDecision("allow")
"""The plain allow (frozen: one object serves every call)."""


class ToolGate(Protocol):
    async def decide(
        self,
        session: SessionInfo,
        agent: AgentConfig,
        binding: ToolBinding,
        arguments: Mapping[str, Any],
    ) -> GateDecision: ...


class ApprovalRulesGate:
    """No policy engine: the agent's approval rules alone (write/destructive ask a person)."""

    async def decide(
        self,
        session: SessionInfo,  # noqa: ARG002
        agent: AgentConfig,
        binding: ToolBinding,
        arguments: Mapping[str, Any],  # noqa: ARG002
    ) -> GateDecision:
        if agent.approvals.needed(binding):
            return GateDecision("approve", f"{binding.risk} tool {binding.function} needs approval")
        return ALLOW
